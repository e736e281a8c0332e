"""Run named steps in dependency order, every step whose needs are met at the same time.

``!deploy all`` used to deploy one stack after another, so stacks that share nothing waited
for each other, each for its full convergence. Here a step starts the moment the steps it
needs have succeeded; a step that fails stops only the steps that need it (directly or
through others), and each of those is told which failure stopped it.

Threads rather than asyncio: a step is a blocking deploy (the docker CLI, then Engine API
polls through the synchronous SDK), and the worker runs every job in a thread already.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

R = TypeVar("R")

# Steps running at once. A deploy mostly waits (for the CLI, then for swarm to converge),
# so this is not the number of cores; it bounds the docker CLI processes started at once.
MAX_PARALLEL = 8


class CycleError(ValueError):
    """Steps that need each other: no order runs them."""


def check(needs: Mapping[str, set[str]]) -> None:
    """Raise ``CycleError`` naming the steps that can never start."""
    done: set[str] = set()
    while len(done) < len(needs):
        ready = {n for n, deps in needs.items() if n not in done and deps & set(needs) <= done}
        if not ready:
            stuck = sorted(set(needs) - done)
            raise CycleError(f"these stacks need each other: {', '.join(stuck)}")
        done |= ready


def run(
    needs: Mapping[str, set[str]],
    step: Callable[[str], R],
    succeeded: Callable[[R], bool],
    parallel: int = MAX_PARALLEL,
) -> tuple[dict[str, R], dict[str, str]]:
    """Run ``step(name)`` for every name in ``needs`` once the names it needs succeeded.

    Returns the results by name, and the names not run with why ("needs ci, which failed").
    Needs outside ``needs`` are ignored (a stack that is not in this run is not waited for).
    An exception in a step (the worker handing the job over) is raised once the steps
    already running have returned; nothing new starts after it.
    """
    check(needs)
    deps = {name: set(d) & set(needs) for name, d in needs.items()}
    results: dict[str, R] = {}
    skipped: dict[str, str] = {}
    running: dict[Future[R], str] = {}
    error: BaseException | None = None
    with ThreadPoolExecutor(max(1, parallel), thread_name_prefix="wave") as pool:
        while True:
            changed = error is None
            while changed:  # a skip can block further steps: look again until none changes
                changed = False
                for name in sorted(deps):
                    if name in results or name in skipped or name in running.values():
                        continue
                    blocked = _blocked_by(deps[name], results, skipped, succeeded)
                    if blocked:
                        skipped[name] = blocked
                        changed = True
                    elif deps[name] <= set(results) and len(running) < parallel:
                        running[pool.submit(step, name)] = name
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                name = running.pop(future)
                exc = future.exception()
                if exc is not None:
                    error = error or exc
                else:
                    results[name] = future.result()
    if error is not None:
        raise error
    return results, skipped


def _blocked_by(
    deps: set[str],
    results: Mapping[str, R],
    skipped: Mapping[str, str],
    succeeded: Callable[[R], bool],
) -> str:
    """Why a step can no longer run ("needs ci, which failed"), or "" while it still can."""
    for dep in sorted(deps):
        if dep in results and not succeeded(results[dep]):
            return f"needs {dep}, which failed"
        if dep in skipped:
            return f"needs {dep}, which was not deployed"
    return ""
