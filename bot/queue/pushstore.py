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
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._redis = client
        self.keys = keys

    @classmethod
    def connect(cls, url: str, prefix: str) -> PushStore:
        """A store with a synchronous client of its own (the webhook serves in threads)."""
        return cls(sync_client(url), Keys(prefix))

    def first_delivery(self, digest: str, ttl: int) -> bool:
        """Remember a delivery for ``ttl`` seconds; False if it was taken before (a replay)."""
        return bool(self._redis.set(self.keys.webhook(digest), "1", nx=True, ex=ttl))

    def wake(self, word: str, audit: dict[str, Any]) -> None:
        """Wake the source watcher with ``word`` and audit the push, in one transaction."""
        pokes = self.keys.watch("pokes")
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.rpush(pokes, word)
            pipe.expire(pokes, POKES_TTL)
            records.add(pipe, self.keys, entry(audit))
            pipe.execute()

    def audit(self, fields: dict[str, Any]) -> None:
        records.record_sync(self._redis, self.keys, **fields)
