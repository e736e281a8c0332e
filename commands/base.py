"""How a command is declared, whole, in one file: its grammar, the permission it needs
(its name), its confirmation text, its job schema (derived from its arguments), its
worker-side handler, how its result reads and how its notice reads.

One declaration feeds the parser, the permission check, ``!help``, the worker's validation
of the job and its handler table, the renderer and the notices, so adding a command is
adding a file: nothing else names it.

Command modules are imported by both processes, so they use only the shared core and the
reply model (``make lint`` holds them to it): the chat side's and the queue's objects
reach an answering command through the ``Context`` protocols below, the swarm through
``bot.core.operations.WorkerTools``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from bot.core.alerting.api import AlertApi
from bot.core.config import Config
from bot.core.ids import GIT_REF, SERVICE_NAME, STACK_NAME
from bot.core.locks import Lock
from bot.core.operations import Handler, NoticeFor
from bot.core.policy import Policy
from bot.core.replies import Message, Reply
from bot.core.schedule import WINDOW_ARG
from bot.core.wire import Result, Schema


@dataclass(frozen=True)
class Arg:
    name: str
    pattern: re.Pattern[str]
    what: str  # "a stack name", for errors
    optional: bool = False
    shown: str = ""  # how usage spells it, if not by name
    # May be followed by `@<git ref>` (`dev@v1.2`): the parser splits it off into "ref".
    at_ref: bool = False
    # Takes the rest of the line, words and all (a reason); only as the last argument.
    rest: bool = False

    def usage(self) -> str:
        first, bar, rest = (self.shown or self.name).partition("|")
        label = first + ("[@ref]" if self.at_ref else "") + bar + rest  # <stack[@ref]|all>
        label += "..." if self.rest else ""
        return f"[{label}]" if self.optional else f"<{label}>"


REF_ARG = "ref"  # where the parser puts the `@<ref>` of an ``at_ref`` argument


def stack_arg(
    name: str = "stack", optional: bool = False, allow_all: bool = False, at_ref: bool = False
) -> Arg:
    pattern = re.compile(rf"^(?:all|{STACK_NAME.pattern[1:-1]})$") if allow_all else STACK_NAME
    return Arg(name, pattern, "a stack name", optional, f"{name}|all" if allow_all else "", at_ref)


def service_arg() -> Arg:
    return Arg("service", SERVICE_NAME, "a service name")


class JobRecords(Protocol):
    """The queue as answering commands see it (``bot.queue.producer.JobQueue``)."""

    async def record(self, job_id: str) -> dict[str, str]: ...

    async def recent(self, limit: int) -> list[dict[str, str]]: ...

    async def cancel(self, job_id: str, by: str) -> str: ...

    async def audit_since(self, since: float) -> list[dict[str, str]]: ...

    async def swarm_found(self) -> dict[str, dict[str, Any]]:
        """Per worker: the daemon, node and swarm it reaches (``Whereabouts`` as data)."""
        ...

    async def swarm_accepted(self) -> str | None:
        """The swarm ID the workers serve (None before any worker started)."""
        ...

    async def accept_swarm(self, swarm_id: str, by: str) -> None: ...

    def locks(self) -> LockRecords:
        """Stack locks (``bot.queue.lockstore.AsyncLockStore``)."""
        ...

    async def tell(self, stack: str, text: str, lines: tuple[str, ...] = ()) -> int:
        """A notice to the rooms routed for ``stack``."""
        ...

    async def poke_watcher(self, word: str) -> None:
        """Wake the source watcher: changes held for a lock are looked at again."""
        ...


class LockRecords(Protocol):
    async def all(self) -> dict[str, Lock]: ...

    async def put(self, lock: Lock) -> None: ...

    async def drop(self, stack: str) -> None: ...


class Confirmer(Protocol):
    """The dispatcher's confirmation flow (``bot.chat.dispatch.Dispatcher``)."""

    async def confirm(self, message: Message, code: str) -> Reply: ...


@dataclass(frozen=True)
class Context:
    """What a directly answered command may use; no Docker here, by design."""

    message: Message
    config: Config
    policy: Policy
    queue: JobRecords
    registry: dict[str, Command]
    dispatcher: Confirmer  # for the policy commands (confirm)
    alerts: AlertApi | None = None  # Alertmanager's API, when [alerts] names it


@dataclass(frozen=True)
class Command:
    name: str
    summary: str
    args: tuple[Arg, ...] = ()
    examples: tuple[str, ...] = ()
    # The argument that names a stack, checked against the user's stack globs before queueing.
    stack_param: str | None = None
    # The job takes that stack's lock (it changes the stack): only then can it wait behind
    # another job on the same stack, and only then does "queued behind" make sense.
    locks_stack: bool = False
    # May be scheduled (``at 22:00``, ``in 2h``) and run outside its stack's deploy windows
    # (``--now``, confirmed) or at their next opening (``--when-open``).
    schedulable: bool = False
    # A queued command that changes nothing: it may run in the worker's read slots
    # (``queue.read_slots``), so a house full of deploys never delays it.
    read_only: bool = False
    # Answered from one swarm's state (its locks, its identity, its windows): where the bot
    # serves several swarms, the answer begins with the swarm's name, as a job's does.
    swarm_state: bool = False
    # Either answered directly by the bot ...
    answer: Callable[[Context, dict[str, str]], Awaitable[Reply]] | None = None
    # ... or queued: the job carries the parsed arguments, the worker runs ``handler``
    # (see bot.core.operations), and ``render`` turns its result into the reply.
    handler: Handler | None = None
    render: Callable[[Result], Reply] | None = None
    render_progress: Callable[[dict[str, Any]], str] | None = None
    # Confirmed whatever safety.confirm says, when this says so for these arguments
    # (`!swarm accept`, a silence longer than alerts.confirm_silence_over_seconds).
    always_confirm: Callable[[Config, dict[str, str], str], bool] | None = None  # ..., user
    # What a confirmation says it will do (when safety.confirm names the command).
    confirm_text: Callable[[dict[str, str]], str] | None = None
    # The notices a finished job posts (commands that change the swarm).
    notice: NoticeFor | None = None

    def usage(self, prefix: str) -> str:
        words = [f"{prefix}{self.name}", *(a.usage() for a in self.args)]
        if self.schedulable:
            words.append("[at <time>|in <duration>] [--now|--when-open]")
        return " ".join(words)

    @property
    def queued(self) -> bool:
        return self.handler is not None

    def schema(self) -> Schema:
        """The job's arguments as the worker validates them: the declared grammar."""
        schema: dict[str, tuple[re.Pattern[str], bool]] = {
            a.name: (a.pattern, not a.optional) for a in self.args
        }
        if any(a.at_ref for a in self.args):
            schema[REF_ARG] = (GIT_REF, False)
        if self.schedulable:
            schema[WINDOW_ARG] = (re.compile(r"^now$"), False)
        return schema

    def consequence(self, args: dict[str, str]) -> str:
        return self.confirm_text(args) if self.confirm_text else f"this runs {self.name}"


def error_reply(result: Result) -> Reply:
    if result.data.get("refused"):
        return Reply(
            f"job {result.job} refused: {result.data.get('error', '?')}",
            status="refused",
            job=result.job,
        )
    return Reply(
        f"job {result.job} failed: {result.data.get('error', 'unknown error')}",
        status="failed",
        job=result.job,
    )
