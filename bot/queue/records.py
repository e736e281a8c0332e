"""The audit trail's Redis side: two capped streams, newest entries read first by ``!audit``.

Real decisions (queued, confirmed, answered, every job's outcome) and refusals (refused,
invalid, rate-limited, rejected queue entries, forged webhook deliveries) are kept apart:
10,500 ``!nopeN`` lines in four seconds used to push a restart recorded a minute before out
of the one capped stream. Now refusals can only push out older refusals."""

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
REFUSED_MAXLEN = 5_000
REFUSALS = frozenset({"refused", "invalid", "rate-limited", "rejected", "replayed", "stale"})


def swarmed(keys: Keys, fields: dict[str, Any]) -> dict[str, Any]:
    """An entry written by one swarm's worker names that swarm (several swarms only)."""
    return {"swarm": keys.swarm_name, **fields} if keys.swarm_name else fields


def _stream(keys: Keys, item: dict[str, str]) -> tuple[str, int]:
    if item.get("decision", "").split(" ")[0] in REFUSALS:
        return keys.audit_refused, REFUSED_MAXLEN
    return keys.audit, AUDIT_MAXLEN


async def record(client: aioredis.Redis, keys: Keys, **fields: Any) -> None:
    """Bot side. An audit write that fails (Redis down) is logged, never fatal."""
    item = entry(swarmed(keys, fields))
    stream, maxlen = _stream(keys, item)
    try:
        try:
            await client.xadd(stream, text.wire(item), maxlen=maxlen, approximate=True)
        except redis.ResponseError:  # not a stream (someone wrote there): made anew
            await client.delete(stream)
            await client.xadd(stream, text.wire(item), maxlen=maxlen, approximate=True)
    except (redis.RedisError, OSError) as exc:
        log.warning("audit entry kept in the log only: %s", exc)


def record_sync(client: redis.Redis, keys: Keys, **fields: Any) -> None:
    """Worker side."""
    item = entry(swarmed(keys, fields))
    stream, maxlen = _stream(keys, item)
    try:
        try:
            client.xadd(stream, text.wire(item), maxlen=maxlen, approximate=True)
        except redis.ResponseError:  # not a stream (someone wrote there): made anew
            client.delete(stream)
            client.xadd(stream, text.wire(item), maxlen=maxlen, approximate=True)
    except redis.RedisError as exc:
        log.warning("audit entry kept in the log only: %s", exc)


def add(pipe: Any, keys: Keys, item: dict[str, str]) -> None:
    """An entry made by ``bot.core.audit.entry``, written in the caller's transaction (a
    pipeline, sync or async), so both happen or neither."""
    stream, maxlen = _stream(keys, item)
    pipe.xadd(stream, text.wire(item), maxlen=maxlen, approximate=True)


async def read(
    client: aioredis.Redis, keys: Keys, since: float, limit: int = 1000
) -> list[dict[str, str]]:
    """Entries of both streams newer than ``since`` (a Unix time), newest first."""
    start = f"{int(since * 1000)}-0"
    async with client.pipeline(transaction=False) as pipe:
        pipe.xrevrange(keys.audit, "+", start, count=limit)
        pipe.xrevrange(keys.audit_refused, "+", start, count=limit)
        decisions, refusals = await pipe.execute(raise_on_error=False)
    merged = [
        (_order(entry_id), item)
        for reply in (decisions, refusals)
        if not isinstance(reply, Exception)  # a key of another type: read as empty
        for entry_id, item in text.entries(reply)
    ]
    merged.sort(key=lambda pair: pair[0], reverse=True)
    return [item for _key, item in merged[:limit]]


def _order(entry_id: str) -> tuple[int, int]:
    millis, _, seq = entry_id.partition("-")
    try:
        return int(millis), int(seq or 0)
    except ValueError:
        return 0, 0
