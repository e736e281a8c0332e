"""Confirmations for dangerous commands: a short code, the same user, a time limit, and
optionally a second, different approver.

A pending confirmation lives in Redis under its code with a TTL, so it expires by itself
and survives a bot restart; nothing is queued until it is confirmed.
"""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as aioredis

from bot.core.ids import confirmation_code
from bot.queue.keys import Keys


class Confirmations:
    def __init__(self, client: aioredis.Redis, keys: Keys, ttl: int) -> None:
        self._redis = client
        self._keys = keys
        self.ttl = ttl

    def _key(self, code: str) -> str:
        return self._keys.confirmation(code)

    async def ask(self, pending: dict[str, Any]) -> str:
        for _ in range(20):
            code = confirmation_code()
            if await self._redis.set(self._key(code), json.dumps(pending), nx=True, ex=self.ttl):
                return code
        raise RuntimeError("no free confirmation code")

    async def get(self, code: str) -> dict[str, Any] | None:
        raw = await self._redis.get(self._key(code))
        return json.loads(raw) if raw else None

    async def update(self, code: str, pending: dict[str, Any]) -> None:
        await self._redis.set(self._key(code), json.dumps(pending), xx=True, keepttl=True)

    async def take(self, code: str) -> bool:
        """Remove the pending entry; True for the one caller that removed it (no double run)."""
        return bool(await self._redis.delete(self._key(code)))
