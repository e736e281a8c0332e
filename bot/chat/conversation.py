"""The conversation every chat platform has with its users, written once.

A command gets 👀 as soon as it is seen, then the bot's immediate answer (or "queued as
job N"); a queued job's progress is one message edited in place; its result is posted
and the command gets ✅ or ❌; a refusal or bad input gets ❌ at once. Notices go to their
room on their own. A result or notice delivered again (the bot died before acknowledging
it) is posted once.

An adapter turns platform events into ``Message`` and supplies a ``Surface``: how to post,
edit and react on its platform. Everything else about the conversation lives here.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Literal, Protocol

import redis
import redis.asyncio as aioredis

from bot.chat.dispatch import Dispatcher
from bot.core.replies import Message, Reply
from bot.core.wire import Result

log = logging.getLogger("swarmbot.chat")

Mark = Literal["seen", "done", "failed"]
PROGRESS_TTL = 86400
POSTED_TTL = 7 * 86400


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

    async def announce(self, ref: dict[str, str], reply: Reply, key: str) -> None:
        """Post a notice in its room, not in a thread."""
        ...


class Conversation:
    def __init__(
        self, surface: Surface, dispatcher: Dispatcher, redis: aioredis.Redis, key: str
    ) -> None:
        self.surface = surface
        self.dispatcher = dispatcher
        self.redis = redis
        self._key = key  # this adapter's Redis key root (keys.Keys.adapter)

    async def command(self, message: Message, event: str) -> Reply | None:
        """Handle one command (``event``: its platform ID, for idempotent sends); returns
        the immediate reply."""
        ref = message.ref
        await self.surface.react(ref, "seen", f"seen-{event}")
        reply = await self.dispatcher.handle(message)
        if reply is None:
            return None
        if reply.status == "queued" and reply.job:
            sent = await self.surface.post(ref, reply, f"queued-{reply.job}")
            if sent:  # a message to edit with the job's progress
                await self.redis.set(self._progress(reply.job), sent, ex=PROGRESS_TTL)
            return reply
        await self.surface.post(ref, reply, f"answer-{event}")
        if reply.status in ("refused", "error"):
            await self.surface.react(ref, "failed", f"end-{event}")
        return reply

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
            await self._once(key, lambda: self.surface.announce(ref, reply, key))
            return
        if not self.surface.serves(ref):
            log.warning("job %s: result for a room I do not serve; dropped", result.job)
            return
        progress = self._progress(result.job)
        if result.kind == "progress":
            message = await self.redis.get(progress)
            if message:
                digest = hashlib.sha256(reply.text.encode()).hexdigest()[:12]
                await self.surface.edit(ref, str(message), reply, f"edit-{result.job}-{digest}")
            else:
                sent = await self.surface.post(ref, reply, f"progress-{result.job}")
                if sent:
                    await self.redis.set(progress, sent, ex=PROGRESS_TTL)
            return
        key = f"result-{result.job}"
        await self._once(key, lambda: self.surface.post(ref, reply, key))
        await self.surface.react(ref, "done" if result.ok else "failed", f"end-{result.job}")
        # Housekeeping after the post: failing here must not make the result look
        # undelivered (a retry would post it again); the key expires by itself anyway.
        await self._tidy(self.redis.delete(progress))

    async def _once(self, key: str, send: Callable[[], Awaitable[object]]) -> None:
        """Send unless it was sent before (some platforms have no idempotency key)."""
        if self.surface.deduplicates:
            await send()
            return
        posted = f"{self._key}:posted:{key}"
        if await self.redis.exists(posted):
            return
        await send()
        await self._tidy(self.redis.set(posted, 1, ex=POSTED_TTL))

    async def _tidy(self, write: Awaitable[object]) -> None:
        """A Redis write after a send: left (logged) when Redis fails, never raised,
        since raising would have the send retried, and posted twice."""
        try:
            await write
        except redis.RedisError as exc:
            log.warning("after a post: redis unavailable (%s)", exc)

    def _progress(self, job: str) -> str:
        return f"{self._key}:progress:{job}"
