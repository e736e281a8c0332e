"""The conversation every chat platform has with its users, written once.

A command gets 👀 as soon as it is seen, then the bot's immediate answer; a queued job's
result is posted and the command gets ✅ or ❌; a refusal or bad input gets ❌ at once.
"queued as job N" is said only if the job has not answered within ``queued_delay`` (or at
once if it waits behind another job, for a worker slot, or for a worker): most jobs answer
in milliseconds, and a message that is outdated before it is read is noise and a round
trip the answer would wait behind. A job's progress is one message edited in place.
Reactions go out beside posts, not before them: their order does not matter. Notices go
to their room on their own. A result or notice delivered again (the bot died before
acknowledging it) is posted once.

An adapter turns platform events into ``Message`` and supplies a ``Surface``: how to post,
edit and react on its platform. Everything else about the conversation lives here.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal, Protocol

from bot.chat.dispatch import QUEUE_DOWN, Dispatcher
from bot.core.replies import Message, Reply
from bot.core.wire import Result
from bot.queue.chatstate import ChatState
from bot.queue.errors import StoreDown, StoreError

log = logging.getLogger("swarmbot.chat")

Mark = Literal["seen", "done", "failed"]
PROGRESS_TTL = 86400
# How long a job may take before chat is told "queued as job N": !services, !ps and the
# like answer well within it, a deploy does not.
QUEUED_DELAY = 1.0
ANSWERED_REMEMBERED = 1000
POSTED_TTL = 7 * 86400
STORY_TTL = 7 * 86400  # how long a story's message can still be edited


class Undeliverable(Exception):
    """The platform refused a post for good (the bot may not post in that room, the
    channel is gone): retrying cannot help, so the message is dropped at once."""


class Surface(Protocol):
    """One chat platform's way of saying things. ``ref`` is the adapter's own reference
    to where a command was said (room and event, channel and ts, thread); ``key`` names
    the send uniquely, for platforms that deduplicate by it (Matrix transaction IDs)."""

    # The platform itself drops a send whose key it has seen (Matrix); else the
    # conversation remembers in Redis what it posted (Slack).
    deduplicates: bool

    def serves(self, ref: dict[str, str]) -> bool:
        """Is ``ref`` in a room or channel this bot serves?"""
        ...

    async def post(self, ref: dict[str, str], reply: Reply, key: str) -> str:
        """Post in the command's thread; returns the (first) message's ID."""
        ...

    async def edit(self, ref: dict[str, str], message: str, reply: Reply, key: str) -> None: ...

    async def react(self, ref: dict[str, str], mark: Mark, key: str) -> None: ...

    async def announce(self, ref: dict[str, str], reply: Reply, key: str) -> str:
        """Post a notice in its room, not in a thread; returns the (first) message's ID."""
        ...

    def thread_of(self, ref: dict[str, str], message: str) -> dict[str, str]:
        """Where a reply in ``message``'s thread goes (``ref``: the message's room)."""
        ...


class Conversation:
    def __init__(
        self,
        surface: Surface,
        dispatcher: Dispatcher,
        state: ChatState,
        queued_delay: float = QUEUED_DELAY,
    ) -> None:
        self.surface = surface
        self.dispatcher = dispatcher
        self.state = state  # this adapter's keys in Redis
        self._queued_delay = queued_delay
        # Jobs whose "queued as job N" is held back: the task that posts it if the job has
        # not answered in time. Only this process posts it, so memory is the right place.
        self._held: dict[str, asyncio.Task[None]] = {}
        self._posting: dict[str, asyncio.Task[Any]] = {}  # held ones now being posted
        # Jobs answered lately: a fast job can answer before its command's turn ends.
        self._answered: collections.OrderedDict[str, None] = collections.OrderedDict()

    async def command(self, message: Message, event: str) -> Reply | None:
        """Handle one command (``event``: its platform ID, for idempotent sends); returns
        the immediate reply."""
        ref = message.ref
        seen = asyncio.create_task(self.surface.react(ref, "seen", f"seen-{event}"))
        try:
            reply = await self.dispatcher.handle(message)
            if reply is None:
                return None
            if reply.status == "queued" and reply.job:
                job = instance(reply.job, ref)
                if job in self._answered:
                    return reply  # answered while it was being queued: nothing to say
                if reply.waits or self._queued_delay <= 0:
                    await self._say_queued(ref, reply, job)
                else:
                    self._held[job] = asyncio.create_task(self._say_queued_later(ref, reply, job))
                return reply
            # The answer first, then its mark: a mark that lands before the answer it stands
            # for reads as "done" with nothing to show (side by side, it often did).
            await self.surface.post(ref, reply, f"answer-{event}")
            if reply.status in ("refused", "error"):
                await self.surface.react(ref, "failed", f"end-{event}")
            return reply
        finally:
            await seen

    async def _say_queued(self, ref: dict[str, str], reply: Reply, job: str) -> None:
        """``job``: the job as this conversation keys it (``instance``)."""
        sent = await self.surface.post(ref, reply, f"queued-{job}")
        if sent:  # a message to edit with the job's progress
            await self._tidy(self.state.put(self._progress(job), sent, PROGRESS_TTL))

    async def _say_queued_later(self, ref: dict[str, str], reply: Reply, job: str) -> None:
        """Post "queued" if nothing of the job has arrived after the delay. Cancelled by
        the job's first progress line or its result (``_settle``) while it still sleeps."""
        await asyncio.sleep(self._queued_delay)
        self._held.pop(job, None)  # from here on it posts: settling waits for it
        task = asyncio.current_task()
        if task is not None:
            self._posting[job] = task
        try:
            await self._say_queued(ref, reply, job)
        except Exception as exc:  # a "queued" lost is no answer lost; the result follows
            log.warning("job %s: could not say it was queued: %s", reply.job, exc)
        finally:
            self._posting.pop(job, None)

    async def _settle(self, job: str) -> None:
        """Before the job's progress or result is posted: a "queued" still held back is
        dropped; one being posted is waited for, so it stays above what follows."""
        held = self._held.pop(job, None)
        if held is not None:
            held.cancel()
        posting = self._posting.get(job)
        if posting is not None:
            await asyncio.shield(posting)

    async def first_time(self, name: str, ttl: int, ref: dict[str, str], event: str) -> bool:
        """Whether a command is new (not handled before a restart, not a platform's retry):
        marked as handled, in Redis. When Redis cannot be reached even after the client's
        retries (a failover that takes long), the command is answered "queue unavailable"
        rather than dropped without a word."""
        try:
            return await self.state.first_time(name, ttl)
        except StoreDown as exc:
            log.warning("command %s not taken: redis unavailable (%s)", event, exc)
            await self.surface.post(ref, Reply(QUEUE_DOWN, status="error"), f"down-{event}")
            return False

    async def refuse(self, ref: dict[str, str], reply: Reply, event: str) -> None:
        """Answer a command that will not run (sent while the bot was away, too long ago)."""
        await self.surface.post(ref, reply, f"refused-{event}")
        await self.surface.react(ref, "failed", f"end-{event}")

    async def tell(self, ref: dict[str, str], reply: Reply, key: str) -> None:
        """Say something about a job in its command's thread, if this bot serves it."""
        if self.surface.serves(ref):
            await self._once(key, lambda: self.surface.post(ref, reply, key))

    async def deliver(self, result: Result, reply: Reply) -> None:
        """A result, progress line or notice from the worker."""
        ref = result.reply_to
        if result.kind == "notice":
            key = f"notice-{result.data.get('id')}"
            story = result.data.get("story")
            if story:
                thread = [str(line) for line in result.data.get("thread") or []]
                await self._story(ref, reply, str(story), thread, key)
            else:
                await self._once(key, lambda: self.surface.announce(ref, reply, key))
            return
        if not self.surface.serves(ref):
            log.warning("job %s: result for a room I do not serve; dropped", result.job)
            return
        job = instance(result.job, ref)
        await self._settle(job)
        progress = self._progress(job)
        if result.kind == "progress":
            message = await self.state.get(progress)
            if message:
                digest = hashlib.sha256(reply.text.encode()).hexdigest()[:12]
                await self.surface.edit(ref, str(message), reply, f"edit-{job}-{digest}")
            else:
                sent = await self.surface.post(ref, reply, f"progress-{job}")
                if sent:
                    await self.state.put(progress, sent, PROGRESS_TTL)
            return
        self._answered[job] = None
        while len(self._answered) > ANSWERED_REMEMBERED:
            self._answered.popitem(last=False)
        key = f"result-{job}"
        await self._once(key, lambda: self.surface.post(ref, reply, key))
        await self.surface.react(ref, "done" if result.ok else "failed", f"end-{job}")
        # Housekeeping after the post: failing here must not make the result look
        # undelivered (a retry would post it again); the key expires by itself anyway.
        await self._tidy(self.state.drop(progress))

    async def _story(
        self, ref: dict[str, str], reply: Reply, story: str, thread: list[str], key: str
    ) -> None:
        """One message per story (an alert group, a deploy from start to end): posted the
        first time, edited after; ``thread``, when given, is said in its thread. The message
        is remembered in Redis, so a bot restart edits it rather than posting it again."""
        name = f"story:{story}"
        message = await self.state.get(name)
        if message is None and reply.text:
            if self.surface.deduplicates or not await self.state.has(f"posted:{key}"):
                message = await self.surface.announce(ref, reply, key)
                if message:
                    await self._tidy(self.state.put(name, message, STORY_TTL))
                if not self.surface.deduplicates:
                    await self._tidy(self.state.put(f"posted:{key}", "1", POSTED_TTL))
        elif message and reply.text:
            await self.surface.edit(ref, message, reply, f"{key}-edit")
        if not thread:
            return
        said = Reply("\n".join(thread), status=reply.status)
        if message:
            where = self.surface.thread_of(ref, message)
            await self._once(f"{key}-thread", lambda: self.surface.post(where, said, f"{key}-t"))
        else:  # its message was never posted here (or is forgotten): said on its own
            await self._once(f"{key}-thread", lambda: self.surface.announce(ref, said, f"{key}-t"))

    async def _once(self, key: str, send: Callable[[], Awaitable[object]]) -> None:
        """Send unless it was sent before (some platforms have no idempotency key)."""
        if self.surface.deduplicates:
            await send()
            return
        posted = f"posted:{key}"
        if await self.state.has(posted):
            return
        await send()
        await self._tidy(self.state.put(posted, "1", POSTED_TTL))

    async def _tidy(self, write: Awaitable[object]) -> None:
        """A Redis write after a send: left (logged) when Redis fails, never raised,
        since raising would have the send retried, and posted twice."""
        try:
            await write
        except StoreError as exc:
            log.warning("after a post: redis unavailable (%s)", exc)

    def _progress(self, job: str) -> str:
        return f"progress:{job}"


def instance(job: str, ref: dict[str, str]) -> str:
    """One job as this conversation knows it: its ID and where it was asked. The ID alone
    is not enough: a job counter lost with Redis's data (or deleted) starts again, and a
    new job 2 must not be taken for the old one, whose answer was posted already (it
    would then never be posted, nor its "queued" said)."""
    where = json.dumps({k: v for k, v in ref.items() if k != "inbox"}, sort_keys=True)
    return f"{job}-{hashlib.sha256(where.encode()).hexdigest()[:10]}"
