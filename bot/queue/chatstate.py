"""What a chat adapter keeps in Redis: events handled (so a restart does not run a command
twice), the message that shows a job's progress, results posted on platforms without an
idempotency key, the Matrix sync token. One adapter's keys live under its root
(``Keys.adapter``), named by the adapter ("sync-token", "handled:<event>").

Every value is text the adapter reads back, so each read tolerates what anyone with write
access to Redis may have put there: a key of another type reads as absent and is dropped.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable

import redis.asyncio as aioredis

from bot.queue.errors import WrongType

log = logging.getLogger("swarmbot.chatstate")


class ChatState:
    def __init__(self, client: aioredis.Redis, root: str) -> None:
        self._redis = client
        self.root = root

    def _key(self, name: str) -> str:
        return f"{self.root}:{name}"

    async def first_time(self, name: str, ttl: int | None = None) -> bool:
        """Mark ``name`` as done; True for the one caller that marked it.

        Marked with a token of this call: a SET retried after its reply was lost (Redis
        failing over between the write and the answer) finds its own token and is still
        the first; with a constant value it read as "handled before" and the command was
        dropped unanswered (seen once in 20 failover trials)."""
        key, token = self._key(name), secrets.token_hex(8)
        if await self._redis.set(key, token, nx=True, ex=ttl):
            return True
        try:
            return bool(await self._redis.get(key) == token)
        except WrongType:
            return False

    async def get(self, name: str) -> str | None:
        """The text stored under ``name``; None when absent or of another type (dropped)."""
        key = self._key(name)
        try:
            value = await self._redis.get(key)
        except WrongType:
            log.warning("%s was not a string; dropped", key)
            await self._redis.delete(key)
            return None
        return None if value is None else str(value)

    async def put(self, name: str, value: str, ttl: int | None = None) -> None:
        await self._redis.set(self._key(name), value, ex=ttl)

    async def has(self, name: str) -> bool:
        return bool(await self._redis.exists(self._key(name)))

    async def drop(self, name: str) -> None:
        await self._redis.delete(self._key(name))

    async def remembered(self, name: str, value: str, well_formed: Callable[[str], bool]) -> str:
        """A value kept across restarts (set once to ``value``). One that someone overwrote
        with another type, or with something ``well_formed`` refuses, is replaced, not
        trusted: a crash here would crash-loop the bot."""
        key = self._key(name)
        try:
            await self._redis.set(key, value, nx=True)
            stored = str(await self._redis.get(key))
        except WrongType:
            stored = ""
        if well_formed(stored):
            return stored
        log.warning("%s in Redis was malformed; replaced", key)
        await self._redis.set(key, value)
        return value
