"""What the alert receiver keeps in Redis: each alert group's story (which message tells it,
in which rooms; sealed, since it decides what is edited), the count of new alert messages
per room and minute (noise control), and its way to the chat adapters' inboxes: alert
messages are delivered like notices, by the adapters' own result lanes, so a room that
cannot be posted to is retried there and a bot restart loses nothing."""

from __future__ import annotations

import hashlib
import logging
import secrets
from typing import Any

import redis

from bot.core.alerting.story import Story
from bot.core.alerting.ties import LastChange
from bot.core.config import Secret
from bot.core.sealed import Forged, seal, unseal
from bot.core.wire import Result
from bot.queue import records
from bot.queue.changestore import ChangeStore
from bot.queue.clients import sync_client
from bot.queue.consumer import post_result
from bot.queue.errors import WrongType
from bot.queue.keys import Keys

log = logging.getLogger("swarmbot.alerts")
STORY_TTL = 7 * 86400


class AlertStore:
    def __init__(
        self, client: redis.Redis, keys: Keys, secret: Secret, swarms: tuple[str, ...] = ("",)
    ) -> None:
        self._redis = client
        self.keys = keys
        self._secret = secret
        # An alert names a stack, not a swarm: the last changes of every swarm are looked at.
        self._changes = [ChangeStore(client, keys.on(s), secret) for s in swarms]

    @classmethod
    def connect(
        cls, url: str, prefix: str, secret: Secret, swarms: tuple[str, ...] = ("",)
    ) -> AlertStore:
        """A store with a synchronous client of its own (the receiver serves in threads)."""
        return cls(sync_client(url), Keys(prefix), secret, swarms)

    def _story_key(self, group_key: str) -> str:
        return self.keys.alerts(f"group:{hashlib.sha256(group_key.encode()).hexdigest()[:32]}")

    def story(self, group_key: str) -> Story:
        """The group's story so far; a fresh one if none, or if the stored one is forged."""
        key = self._story_key(group_key)
        try:
            raw = self._redis.get(key)
        except WrongType:
            raw = None
        if raw is None:
            return Story()
        try:
            value = unseal(self._secret, key, raw)
        except Forged as exc:
            log.warning("alert story %s refused: %s", key, exc)
            return Story()
        return Story.from_dict(value) if isinstance(value, dict) else Story()

    def tell(self, group_key: str, story: Story, results: list[Result]) -> None:
        """Save the story and queue its messages, in one transaction: both or neither."""
        key = self._story_key(group_key)
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(key, seal(self._secret, key, story.as_dict()), ex=STORY_TTL)
            for result in results:
                post_result(pipe, self.keys, result, self._secret)
            pipe.execute()

    def new_message(self, room: str, now: float) -> int:
        """Count one more new alert message in ``room``; how many in the last minute."""
        key = self.keys.alerts(f"new:{_digest(room)}")
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.zadd(key, {f"{now:.6f}-{secrets.token_hex(4)}": now})
            pipe.zremrangebyscore(key, "-inf", now - 60)
            pipe.zcard(key)
            pipe.expire(key, 120)
            _, _, count, _ = pipe.execute()
        return int(count)

    def fold(self, room: str, now: float) -> tuple[str, int]:
        """The message new groups in ``room`` are folded into this minute (one that began
        less than a minute ago, else a new one), and how many groups it holds now."""
        key = self.keys.alerts(f"fold:{_digest(room)}")
        fresh = f"fold-{_digest(room)[:12]}-{int(now * 1000)}"
        self._redis.set(key, fresh, nx=True, ex=60)
        current = self._redis.get(key)
        fold = current if isinstance(current, str) and current.startswith("fold-") else fresh
        count_key = self.keys.alerts(f"folded:{fold}")
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(count_key)
            pipe.expire(count_key, 180)
            count, _ = pipe.execute()
        return fold, int(count)

    def last_changes(self, stacks: tuple[str, ...]) -> list[LastChange]:
        return [change for store in self._changes for change in store.last(stacks)]

    def audit(self, fields: dict[str, Any]) -> None:
        records.record_sync(self._redis, self.keys, **fields)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]
