"""``!deploy <stack|all>``: ``docker stack deploy`` of ``stacks/<stack>.yaml``, then wait."""

from __future__ import annotations

import re
from typing import Any

from bot.core.replies import Reply, plural, render_table_plain
from bot.core.wire import Result
from commands.base import Arg, Command, error_reply, stack_arg
from commands.check import problem_table
from commands.outcomes import log_lines, outcome_table, progress_line


def _stack_reply(stack: dict[str, Any], job: str) -> Reply:
    name = stack["stack"]
    notes = tuple(n for n in [stack.get("note", "")] if n)
    if stack.get("unchanged"):
        return Reply(
            f"{name} already matches its file: nothing deployed (an unchanged redeploy would "
            f"wipe each service's rollback target); !deploy {name} --force redeploys anyway",
            status="ok",
            job=job,
        )
    if stack.get("error") and stack.get("problems"):
        table = problem_table(stack["problems"])
        return Reply(f"deploy of {name} stopped: {stack['error']}", table, notes, "failed", job)
    if stack.get("error"):
        return Reply(f"deploy of {name} failed: {stack['error']}", status="failed", job=job)
    name, outcomes = stack["stack"], stack["outcomes"]
    bad = [o for o in outcomes if o["state"] != "converged"]
    if not outcomes:
        head = f"deployed {stack['stack']}: the stack has no services"
    elif bad:
        head = f"deploy of {name} FAILED: {len(bad)} of {len(outcomes)} services not converged"
    else:
        count = plural(len(outcomes), "service")
        head = f"deployed {name}: {count} converged in {stack['seconds']:.1f}s"
    return Reply(
        head,
        outcome_table(outcomes) if outcomes else None,
        log_lines(outcomes) + notes,
        status="failed" if bad else "ok",
        job=job,
    )


def render(result: Result) -> Reply:
    data = result.data
    if result.op == "deploy":
        return _stack_reply(data, result.job) if "stack" in data else error_reply(result)
    if "stacks" not in data:
        return error_reply(result)
    replies = [_stack_reply(s, result.job) for s in data["stacks"]]
    lines: list[str] = []
    for r in replies:
        lines.append(r.text)
        if r.status != "ok" and r.table is not None:
            lines.extend(render_table_plain(r.table))
    if data["skipped"]:
        lines.append(f"not deployed (stopped at the first failure): {', '.join(data['skipped'])}")
    done = len(data["stacks"]) - (0 if result.ok else 1)
    head = (
        f"deployed all {done} stacks"
        if result.ok
        else f"deploy all stopped: {done} of {done + 1 + len(data['skipped'])} stacks deployed"
    )
    return Reply(head, detail=tuple(lines), status="ok" if result.ok else "failed", job=result.job)


def to_job(args: dict[str, str]) -> tuple[str, dict[str, str]]:
    if args["stack"] == "all":
        return "deploy_all", {}
    return "deploy", {"stack": args["stack"], **({"force": "yes"} if args.get("force") else {})}


COMMAND = Command(
    name="deploy",
    summary="deploy stacks/<stack>.yaml as stack <stack> and wait until every service has "
    "converged; 'all' deploys every stack in order, stopping at the first failure",
    args=(
        stack_arg(allow_all=True),
        Arg("force", re.compile(r"^--force$"), "--force", optional=True, shown="--force"),
    ),
    examples=("!deploy dev", "!deploy all", "!deploy dev --force"),
    stack_param="stack",
    locks_stack=True,
    job=to_job,
    render=render,
    render_progress=progress_line,
)
