"""One holder at a time across workers: a lease in Redis that moves if its holder dies.

The notice watcher and the source watcher each run on one worker only; every worker tries
to take the lease on each look, and the one holding it renews it."""

from __future__ import annotations

import redis

from bot.queue import scripts

LEASE_MS = 10_000


class Lease:
    def __init__(self, client: redis.Redis, key: str, holder: str, ms: int = LEASE_MS) -> None:
        self.client = client
        self.key = key
        self.holder = holder
        self.ms = ms

    def held(self) -> bool:
        """Take or renew the lease (one round trip, the stack locks' script); True while
        this process holds it."""
        return not self.client.eval(scripts.ACQUIRE, 1, self.key, self.holder, self.ms)

    def give_up(self) -> None:
        """Stopping: let another worker take over at once (only if still ours)."""
        self.client.eval(scripts.RELEASE, 1, self.key, self.holder)
