"""The audit trail's Redis side: a capped stream, newest entries read first by ``!audit``."""

from __future__ import annotations

import logging
from typing import Any

import redis
import redis.asyncio as aioredis

from bot.core.audit import entry
from bot.queue import text
from bot.queue.keys import Keys

log = logging.getLogger("swarmbot.audit")
AUDIT_MAXLEN = 10_000


async def record(client: aioredis.Redis, keys: Keys, **fields: Any) -> None:
    """Bot side. An audit write that fails (Redis down) is logged, never fatal."""
    item = entry(fields)
    try:
        await client.xadd(keys.audit, text.wire(item), maxlen=AUDIT_MAXLEN, approximate=True)
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        log.warning("audit entry kept in the log only: %s", exc)


def record_sync(client: redis.Redis, keys: Keys, **fields: Any) -> None:
    """Worker side."""
    item = entry(fields)
    try:
        client.xadd(keys.audit, text.wire(item), maxlen=AUDIT_MAXLEN, approximate=True)
    except redis.RedisError as exc:
        log.warning("audit entry kept in the log only: %s", exc)


def add(pipe: Any, keys: Keys, item: dict[str, str]) -> None:
    """An entry made by ``bot.core.audit.entry``, written in the caller's transaction (a
    pipeline, sync or async), so both happen or neither."""
    pipe.xadd(keys.audit, text.wire(item), maxlen=AUDIT_MAXLEN, approximate=True)


async def read(
    client: aioredis.Redis, keys: Keys, since: float, limit: int = 1000
) -> list[dict[str, str]]:
    """Entries newer than ``since`` (a Unix time), newest first."""
    entries = await client.xrevrange(keys.audit, "+", f"{int(since * 1000)}-0", count=limit)
    return [item for _id, item in text.entries(entries)]
