"""How a command is declared: grammar, permission, the job it queues, how it reads in chat.

One declaration feeds the parser, the permission check, ``!help`` and the renderer, so
usage text can never drift from what the parser accepts.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bot.core.ids import SERVICE_NAME, STACK_NAME
from bot.core.replies import Reply

if TYPE_CHECKING:
    from bot.chat.dispatch import Dispatcher
    from bot.core.config import Config
    from bot.core.policy import Policy
    from bot.core.replies import Message
    from bot.core.wire import Result
    from bot.queue.producer import JobQueue


@dataclass(frozen=True)
class Arg:
    name: str
    pattern: re.Pattern[str]
    what: str  # "a stack name", for errors
    optional: bool = False
    shown: str = ""  # how usage spells it, if not by name

    def usage(self) -> str:
        label = self.shown or self.name
        return f"[{label}]" if self.optional else f"<{label}>"


def stack_arg(name: str = "stack", optional: bool = False, allow_all: bool = False) -> Arg:
    pattern = re.compile(rf"^(?:all|{STACK_NAME.pattern[1:-1]})$") if allow_all else STACK_NAME
    return Arg(name, pattern, "a stack name", optional, f"{name}|all" if allow_all else "")


def service_arg() -> Arg:
    return Arg("service", SERVICE_NAME, "a service name")


@dataclass(frozen=True)
class Context:
    """What a directly answered command may use; no Docker here, by design."""

    message: Message
    config: Config
    policy: Policy
    queue: JobQueue
    registry: dict[str, Command]
    dispatcher: Dispatcher  # for the policy commands (confirm)


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
    # Either answered directly ...
    answer: Callable[[Context, dict[str, str]], Awaitable[Reply]] | None = None
    # ... or queued: map parsed args to (operation, job args), and render the result.
    job: Callable[[dict[str, str]], tuple[str, dict[str, str]]] | None = None
    render: Callable[[Result], Reply] | None = None
    render_progress: Callable[[dict[str, Any]], str] | None = None
    aliases: tuple[str, ...] = field(default=())

    def usage(self, prefix: str) -> str:
        return " ".join([f"{prefix}{self.name}", *(a.usage() for a in self.args)])


def error_reply(result: Result) -> Reply:
    return Reply(
        f"job {result.job} failed: {result.data.get('error', 'unknown error')}",
        status="failed",
        job=result.job,
    )
