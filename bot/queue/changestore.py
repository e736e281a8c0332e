"""The last change a job made to each stack, for alerts to name ("dev_gerrit changed 4 min
before this fired: !deploy dev by @alice — !rollback dev").

Written by the worker when a changing job finishes, read by the alert receiver. Sealed like
every record acted on (``bot.core.sealed``): text that a Redis writer could forge would put
words in an operator's mouth in the alert room.
"""

from __future__ import annotations

import logging

import redis

from bot.core.alerting.ties import LastChange
from bot.core.config import Secret
from bot.core.sealed import Forged, seal, unseal
from bot.queue.errors import WrongType
from bot.queue.keys import Keys

log = logging.getLogger("swarmbot.changes")
KEPT_SECONDS = 30 * 86400


class ChangeStore:
    def __init__(self, client: redis.Redis, keys: Keys, secret: Secret) -> None:
        self._redis = client
        self.keys = keys
        self._secret = secret

    def _key(self, stack: str) -> str:
        return self.keys.change(stack)

    def record(self, change: LastChange) -> None:
        key = self._key(change.stack)
        self._redis.set(key, seal(self._secret, key, change.as_dict()), ex=KEPT_SECONDS)

    def last(self, stacks: tuple[str, ...]) -> list[LastChange]:
        """The last change to each of ``stacks`` that has one; forged records are left out."""
        if not stacks:
            return []
        keys = [self._key(s) for s in stacks[:20]]
        try:
            raws = self._redis.mget(keys)
        except WrongType:
            return []
        found = []
        for key, raw in zip(keys, raws, strict=True):
            if raw is None:
                continue
            try:
                value = unseal(self._secret, key, raw)
            except Forged as exc:
                log.warning("change record %s refused: %s", key, exc)
                continue
            change = LastChange.from_dict(value) if isinstance(value, dict) else None
            if change is not None:
                found.append(change)
        return found
