"""Which swarm this swarmbot serves, kept in Redis: the ID accepted (the first a worker saw,
or the one an admin confirmed with ``!swarm accept``), sealed so that nobody with write
access to Redis can point the workers at another swarm; and what each worker found (for
``!swarm``, and for an admin to confirm), published with its heartbeat."""

from __future__ import annotations

import json
import time
from typing import Any

import redis
import redis.asyncio as aioredis

from bot.core.config import Secret
from bot.core.sealed import Forged, seal, unseal_dict
from bot.queue.errors import WrongType
from bot.queue.keys import Keys
from bot.queue.text import fields

FOUND_TTL = 3600


class SwarmStore:
    """The worker's side."""

    def __init__(self, client: redis.Redis, keys: Keys, secret: Secret) -> None:
        self._redis = client
        self._key = keys.swarm("accepted")
        self._found = keys.swarm("found")
        self._secret = secret

    def accepted(self) -> str | None:
        """The swarm ID accepted; None if none yet (or the record is not swarmbot's)."""
        return _accepted(self._redis.get(self._key), self._secret, self._key)

    def accept_first(self, swarm_id: str) -> str:
        """Remember ``swarm_id`` unless one is remembered already; the one that stands."""
        record = seal(
            self._secret, self._key, {"id": swarm_id, "by": "first worker", "at": time.time()}
        )
        self._redis.set(self._key, record, nx=True)
        return self.accepted() or swarm_id

    def first_told(self, swarm_id: str) -> bool:
        """True once per swarm found that is not the one served (its notice is told once)."""
        key = f"{self._found}:told:{swarm_id}"
        return bool(self._redis.set(key, 1, nx=True, ex=FOUND_TTL))

    def publish(self, worker: str, found: dict[str, Any]) -> None:
        """What this worker's daemon is (``Whereabouts``), for ``!swarm``."""
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(self._found, worker, json.dumps({**found, "at": time.time()}))
            pipe.expire(self._found, FOUND_TTL)
            pipe.execute()


class SwarmRecords:
    """The bot's side: what the workers found, and an admin's accepting a new swarm."""

    def __init__(self, client: aioredis.Redis, keys: Keys, secret: Secret) -> None:
        self._redis = client
        self._key = keys.swarm("accepted")
        self._found = keys.swarm("found")
        self._secret = secret

    async def accepted(self) -> str | None:
        return _accepted(await self._redis.get(self._key), self._secret, self._key)

    async def found(self) -> dict[str, dict[str, Any]]:
        """Per worker, the daemon, node and swarm it reaches (the last hour's)."""
        try:
            raw = fields(await self._redis.hgetall(self._found))
        except WrongType:
            return {}
        out = {}
        for worker, text in raw.items():
            try:
                value = json.loads(text)
            except ValueError:
                continue
            if isinstance(value, dict):
                out[worker] = value
        return out

    async def accept(self, swarm_id: str, by: str) -> None:
        record = seal(self._secret, self._key, {"id": swarm_id, "by": by, "at": time.time()})
        await self._redis.set(self._key, record)


def _accepted(raw: Any, secret: Secret, key: str) -> str | None:
    if raw is None:
        return None
    try:
        record = unseal_dict(secret, key, raw)
    except Forged:
        return None
    swarm_id = record.get("id")
    return swarm_id if isinstance(swarm_id, str) else None
