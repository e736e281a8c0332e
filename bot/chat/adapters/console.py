"""The terminal chat: the bot against a local swarm, from a shell.

On a TTY it is interactive: jobs run side by side and answer when done. With stdin not a
TTY it reads one command per line, prints each command and its replies as a transcript,
waits for each command's job before reading the next, and exits when all have answered,
so a session can be scripted: ``printf '!services\n' | swarmbot console --user console:admin``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import secrets
import sys
import time
from collections.abc import Iterable
from typing import TextIO

from bot.chat.conversation import Conversation, Mark
from bot.chat.dispatch import Dispatcher
from bot.chat.results import Router
from bot.core.config import Config
from bot.core.replies import Message, Reply, render_plain
from bot.core.wire import Result
from bot.queue.clients import async_client, close
from bot.queue.errors import StoreDown, StoreError
from bot.queue.inbox import Inbox
from bot.queue.producer import JobQueue
from commands import REGISTRY

log = logging.getLogger("swarmbot.console")


class Console:
    # A terminal session reads its own inbox once, from start to end: nothing comes twice.
    deduplicates = True

    def __init__(self, config: Config, user: str, out: TextIO = sys.stdout) -> None:
        self.config = config
        self.user = user
        self.out = out
        self.pending: set[str] = set()
        self.done: set[str] = set()  # a fast job can answer before its "queued" is shown
        self.answered = asyncio.Event()
        self.conversation: Conversation | None = None

    def show(self, reply: Reply) -> None:
        text = render_plain(reply)
        if reply.job and reply.status != "queued":
            text = f"[job {reply.job}] {text}"
        print(text, file=self.out, flush=True)

    # -- the conversation's surface (bot/chat/conversation.py): a terminal prints ----------

    def serves(self, ref: dict[str, str]) -> bool:
        return True

    async def post(self, ref: dict[str, str], reply: Reply, key: str) -> str:
        self.show(reply)
        return ""  # nothing to edit later: progress is printed line after line

    async def edit(self, ref: dict[str, str], message: str, reply: Reply, key: str) -> None:
        self.show(reply)

    async def react(self, ref: dict[str, str], mark: Mark, key: str) -> None:
        return  # a terminal has no reactions: the transcript says it all

    async def announce(self, ref: dict[str, str], reply: Reply, key: str) -> str:
        return ""  # notices go to the chat rooms config routes them to

    def thread_of(self, ref: dict[str, str], message: str) -> dict[str, str]:
        return ref

    async def deliver(self, result: Result, reply: Reply) -> None:
        if result.kind == "notice":
            return
        assert self.conversation is not None
        await self.conversation.deliver(result, reply)
        if result.kind == "result":
            self.done.add(result.job)
            self.pending.discard(result.job)
            self.answered.set()

    async def run(
        self, interactive: bool, wait_seconds: float, script: Iterable[str] | None = None
    ) -> int:
        """Chat until the input ends and every queued job has answered (or ``wait_seconds``
        passed: exit code 1). The input is stdin, or the lines of ``script`` (tests run a
        conversation in-process this way)."""
        lines_in = iter(script) if script is not None else None
        # Any bytes: a line that is not valid UTF-8 is read with U+FFFD in place of the bad
        # bytes (and refused by the parser), never a crash that drops the rest of the input.
        for stream in (sys.stdin, self.out):
            if isinstance(stream, io.TextIOWrapper):
                stream.reconfigure(errors="replace")
        client = async_client(self.config.redis_url)
        inbox = Inbox(client, self.config, f"console-{secrets.token_hex(6)}", REGISTRY)
        dispatcher = Dispatcher(self.config, JobQueue(client, self.config), inbox.name)
        # A transcript says "queued" at once: scripts and readers of it expect every line.
        state = dispatcher.queue.chat_state(inbox.name)
        self.conversation = Conversation(self, dispatcher, state, queued_delay=0)
        lines = 0
        stop = asyncio.Event()
        router = asyncio.create_task(Router(inbox, "console", self.deliver).run(stop))
        try:
            try:
                await inbox.ensure()
            except StoreDown as exc:
                log.warning("redis unavailable (%s); commands will say so", exc)
            if interactive:
                print(
                    f"swarmbot console as {self.user}; {self.config.prefix}help lists commands, "
                    "Ctrl-D quits.",
                    file=self.out,
                    flush=True,
                )
            loop = asyncio.get_running_loop()
            while True:
                line = (
                    next(lines_in, None)
                    if lines_in is not None
                    else await loop.run_in_executor(None, _read_line, interactive)
                )
                if line is None:
                    break
                if not line.strip():
                    continue
                if not interactive:
                    print(f"> {line.rstrip()}", file=self.out, flush=True)
                lines += 1
                reply = await self.conversation.command(
                    Message("console", self.user, "console", line.rstrip("\n")), str(lines)
                )
                if reply is None:
                    print(
                        f"(not a command: commands start with {self.config.prefix})",
                        file=self.out,
                        flush=True,
                    )
                    continue
                if reply.status == "queued" and reply.job and reply.job not in self.done:
                    self.pending.add(reply.job)
                    # A script runs like a shell script: each command finishes before the
                    # next, so `!deploy x` then `!ps x_web` sees the deployed service.
                    if not interactive and await self._drain(wait_seconds):
                        return 1
            return await self._drain(wait_seconds)
        finally:
            stop.set()
            await router
            with contextlib.suppress(StoreError):
                await inbox.delete()
            await close(client)

    async def _drain(self, wait_seconds: float) -> int:
        """Wait for every queued job to answer, up to ``wait_seconds``."""
        deadline = time.monotonic() + wait_seconds
        while self.pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                jobs = ", ".join(sorted(self.pending, key=int))
                print(
                    f"gave up waiting for job(s) {jobs} after {wait_seconds:.0f}s; "
                    "they stay queued (see !jobs)",
                    file=self.out,
                    flush=True,
                )
                return 1
            self.answered.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.answered.wait(), timeout=min(remaining, 1.0))
        return 0


def _read_line(interactive: bool) -> str | None:
    try:
        if interactive:
            return input("swarmbot> ") + "\n"
        line = sys.stdin.readline()
        return line or None
    except EOFError:
        return None
