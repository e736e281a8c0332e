"""The audit trail: every command, who, where, what was decided, and how its job ended.

Kept twice on purpose: in a capped Redis stream (for ``!audit`` in chat) and as JSON lines
in the log (for the log pipeline, which outlives Redis). Entries never carry secrets: the
command text is what the user typed, and arguments are names.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import redis
import redis.asyncio as aioredis

from bot.core.scrub import masker

log = logging.getLogger("swarmbot.audit")
AUDIT_MAXLEN = 10_000


def _entry(fields: dict[str, Any]) -> dict[str, str]:
    entry = {"at": f"{time.time():.3f}"}
    # Masked before it is cut: a secret cut in half would no longer be recognised.
    mask = masker()
    entry.update({k: mask.text(str(v))[:300] for k, v in fields.items() if v not in (None, "")})
    # The JSON text for plain logs; the same entry as fields (and its job id) for JSON logs.
    log.info(
        json.dumps(entry, ensure_ascii=False, sort_keys=True),
        extra={"fields": {"audit": entry}, "job": entry.get("job")},
    )
    return entry


async def record(client: aioredis.Redis, prefix: str, **fields: Any) -> None:
    """Bot side. An audit write that fails (Redis down) is logged, never fatal."""
    entry = _entry(fields)
    try:
        await client.xadd(f"{prefix}:audit", entry, maxlen=AUDIT_MAXLEN, approximate=True)
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        log.warning("audit entry kept in the log only: %s", exc)


def record_sync(client: redis.Redis, prefix: str, **fields: Any) -> None:
    """Worker side."""
    entry = _entry(fields)
    try:
        client.xadd(f"{prefix}:audit", entry, maxlen=AUDIT_MAXLEN, approximate=True)
    except redis.RedisError as exc:
        log.warning("audit entry kept in the log only: %s", exc)


async def read(
    client: aioredis.Redis, prefix: str, since: float, limit: int = 1000
) -> list[dict[str, str]]:
    """Entries newer than ``since`` (a Unix time), newest first."""
    entries = await client.xrevrange(f"{prefix}:audit", "+", f"{int(since * 1000)}-0", count=limit)
    return [dict(fields) for _id, fields in entries]
