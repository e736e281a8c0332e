"""Confirmations for dangerous commands: a short code, the same user, a time limit, and
optionally a second, different approver.

A pending confirmation lives in Redis under its code with a TTL, so it expires by itself
and survives a bot restart; nothing is queued until it is confirmed. It is sealed
(``bot.core.sealed``): a confirmation written into Redis by anyone but the bot or the
worker is refused like a missing one, and logged.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
import redis.asyncio as aioredis

from bot.core.config import Secret
from bot.core.ids import confirmation_code
from bot.core.sealed import Forged, seal, unseal_dict
from bot.queue.keys import Keys

log = logging.getLogger("swarmbot.confirm")

# What a pending confirmation holds, and of which type: a sealed record with other
# shapes (an older version's) is refused rather than half-read.
FIELDS: dict[str, type | tuple[type, ...]] = {
    "user": str,
    "command": str,
    "args": dict,
    "text": str,
    "ref": dict,
    "stack": str,
    "confirmed": bool,
    "approver": str,
    "second": bool,
}


class Confirmations:
    def __init__(self, client: aioredis.Redis, keys: Keys, ttl: int, secret: Secret) -> None:
        self._redis = client
        self._keys = keys
        self._secret = secret
        self.ttl = ttl

    def _key(self, code: str) -> str:
        return self._keys.confirmation(code)

    async def ask(self, pending: dict[str, Any], ttl: int | None = None) -> str:
        for _ in range(20):
            code = confirmation_code()
            sealed = seal(self._secret, self._key(code), pending)
            if await self._redis.set(self._key(code), sealed, nx=True, ex=ttl or self.ttl):
                return code
        raise RuntimeError("no free confirmation code")

    async def get(self, code: str) -> dict[str, Any] | None:
        """The pending confirmation, or None when there is none (missing, expired).
        Raises ``Forged`` for one swarmbot did not write (someone with write access to
        Redis tried): the caller answers as for a missing one, and audits it."""
        key = self._key(code)
        try:
            raw = await self._redis.get(key)
        except redis.ResponseError as exc:  # another type: not ours either
            raise Forged(str(exc)) from None
        if raw is None:
            return None
        pending = unseal_dict(self._secret, key, raw)
        for name, kind in FIELDS.items():
            if not isinstance(pending.get(name), kind):
                raise Forged(f"field {name!r} missing or of the wrong type")
        return pending

    async def update(self, code: str, pending: dict[str, Any]) -> None:
        key = self._key(code)
        await self._redis.set(key, seal(self._secret, key, pending), xx=True, keepttl=True)

    async def take(self, code: str) -> bool:
        """Remove the pending entry; True for the one caller that removed it (no double run)."""
        return bool(await self._redis.delete(self._key(code)))
