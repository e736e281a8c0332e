"""Results and progress for one bot process, read through a consumer group.

A result is acknowledged only after the adapter delivered it, so a bot that dies in between
delivers it when it comes back instead of losing it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection

import redis.asyncio as aioredis

from bot.core.config import Config
from bot.core.wire import Rejected, Result, decode_result
from bot.queue import scripts, text
from bot.queue.keys import BOT_GROUP, Keys

log = logging.getLogger("swarmbot.queue")


class Inbox:
    """Results and progress for one bot process, read through a consumer group."""

    def __init__(
        self, client: aioredis.Redis, config: Config, name: str, ops: Collection[str]
    ) -> None:
        """``ops``: the operations whose results this bot can render (its commands)."""
        self._ops = frozenset(ops)
        self.name = name
        self._redis = client
        self._key = Keys(config.redis_prefix).inbox(name)
        self._secret = config.signing_secret

    async def ensure(self) -> None:
        """The inbox's consumer group; an inbox key of another type is renamed aside (as
        the worker does with its queue) and a new stream made."""
        args = [BOT_GROUP, str(int(time.time()))]
        aside = await self._redis.eval(scripts.ENSURE_STREAM, 1, self._key, *args)
        if aside:
            log.warning("%s was not a stream; renamed to %s", self._key, aside)

    async def read(
        self, consumer: str, block_ms: int, pending: bool = False, after: str = "0"
    ) -> list[tuple[str, Result]]:
        """Results not yet handled; with ``pending`` the ones this consumer got but did not
        ack, from just after entry ``after``."""
        reply = await self._redis.xreadgroup(
            BOT_GROUP,
            consumer,
            {self._key: after if pending else ">"},
            count=50,
            block=None if pending else block_ms,
        )
        out: list[tuple[str, Result]] = []
        for eid, fields in text.stream_entries(reply):
            try:
                out.append((eid, decode_result(fields, self._secret, self._ops)))
            except Rejected as exc:
                log.warning("dropping inbox entry %s: %s", eid, exc)
                await self.ack(eid)
        return out

    async def ack(self, entry_id: str) -> None:
        await self._redis.xack(self._key, BOT_GROUP, entry_id)

    async def delete(self) -> None:
        await self._redis.delete(self._key)
