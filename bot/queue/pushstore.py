"""What the push webhook writes: deliveries taken (so a replay is refused), the word that
wakes the source watcher, and the webhook's audit entries."""

from __future__ import annotations

from typing import Any

import redis

from bot.core.audit import entry
from bot.queue import records
from bot.queue.clients import sync_client
from bot.queue.keys import Keys

POKES_TTL = 3600  # a word nobody reads (no worker) does not stay


class PushStore:
    def __init__(self, client: redis.Redis, keys: Keys, swarms: tuple[str, ...] = ("",)) -> None:
        self._redis = client
        self.keys = keys
        self.swarms = swarms  # every swarm's source watcher is woken by a push

    @classmethod
    def connect(cls, url: str, prefix: str, swarms: tuple[str, ...] = ("",)) -> PushStore:
        """A store with a synchronous client of its own (the webhook serves in threads)."""
        return cls(sync_client(url), Keys(prefix), swarms)

    def first_delivery(self, digest: str, ttl: int) -> bool:
        """Remember a delivery for ``ttl`` seconds; False if it was taken before (a replay)."""
        return bool(self._redis.set(self.keys.webhook(digest), "1", nx=True, ex=ttl))

    def wake(self, word: str, audit: dict[str, Any]) -> None:
        """Wake the source watcher with ``word`` and audit the push, in one transaction."""
        with self._redis.pipeline(transaction=True) as pipe:
            for swarm in self.swarms:
                pokes = self.keys.on(swarm).watch("pokes")
                pipe.rpush(pokes, word)
                pipe.expire(pokes, POKES_TTL)
            records.add(pipe, self.keys, entry(audit))
            pipe.execute()

    def audit(self, fields: dict[str, Any]) -> None:
        records.record_sync(self._redis, self.keys, **fields)
