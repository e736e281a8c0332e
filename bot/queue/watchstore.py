"""What the source watcher keeps in Redis: the pokes that wake it (a push webhook, the
notice watcher's drift word), the branch head it last saw, what it told about drift and
moved image tags, and a count of its looks (for operators and tests).

Writes that must go with a notice or a proposal take the caller's transaction
(``WorkerQueue.batch``): a watcher that dies half way has told nothing.
"""

from __future__ import annotations

import logging

import redis

from bot.queue.keys import Keys
from bot.queue.scripts import NEXT_ID
from bot.queue.text import fields
from bot.queue.text import s as text

log = logging.getLogger("swarmbot.sources")

IMAGE_TOLD_TTL = 90 * 86400


class WatchStore:
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._redis = client
        self.keys = keys
        self._pokes = keys.watch("pokes")
        self._head = keys.watch("git-head")
        self._drift = keys.watch("drift")

    def wait_for_poke(self, seconds: float) -> list[str] | None:
        """The words on the pokes list, after waiting up to ``seconds`` for the first (all
        taken at once: one look for all of them); None if none came. A list of another type
        (someone wrote there) is made anew."""
        try:
            got = self._redis.blpop([self._pokes], seconds)
        except redis.ResponseError as exc:
            log.warning("source watcher: %s unreadable (%s); made anew", self._pokes, exc)
            self._redis.delete(self._pokes)
            return None
        if got is None:
            return None
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.lrange(self._pokes, 0, -1)
            pipe.delete(self._pokes)
            rest, _ = pipe.execute()
        return [text(word) for word in [got[1], *rest]]

    def count_look(self) -> None:
        self._redis.eval(NEXT_ID, 1, self.keys.watch("looks"))

    def git_head(self) -> str:
        return text(self._redis.get(self._head) or "")

    def set_git_head(self, head: str, pipe: redis.client.Pipeline | None = None) -> None:
        (pipe or self._redis).set(self._head, head)

    def drift_told(self) -> dict[str, str]:
        """Per stack, what drift was told last: ``<sha>:<digest of the differences>``."""
        return fields(self._redis.hgetall(self._drift))

    def set_drift_told(self, stack: str, value: str | None, pipe: redis.client.Pipeline) -> None:
        if value is None:
            pipe.hdel(self._drift, stack)
        else:
            pipe.hset(self._drift, stack, value)

    def image_told(self, image: str, digest: str) -> bool:
        return bool(self._redis.exists(self.keys.watch(f"image:{image}@{digest}")))

    def set_image_told(self, image: str, digest: str, pipe: redis.client.Pipeline) -> None:
        pipe.set(self.keys.watch(f"image:{image}@{digest}"), "1", ex=IMAGE_TOLD_TTL)
