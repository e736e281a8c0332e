"""Stack locks: "don't deploy dev, I'm migrating the database". A lock names a stack (or
``all``), who holds it, why and since when. While it stands, a change to the stack by
anyone but its holder is refused with those words; changes proposed from git or the
registry wait for it to go. Pure: the stores (``bot.queue.lockstore``) keep them sealed.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from bot.core.alerting.ties import ago

ALL = "all"


@dataclass(frozen=True)
class Lock:
    stack: str  # a stack name, or "all"
    holder: str  # the stable user ID of who locked it
    reason: str
    since: float

    def as_dict(self) -> dict[str, object]:
        return {
            "stack": self.stack,
            "holder": self.holder,
            "reason": self.reason,
            "since": self.since,
        }

    @classmethod
    def from_dict(cls, raw: object) -> Lock | None:
        if not isinstance(raw, dict):
            return None
        stack, holder, reason, since = (raw.get(k) for k in ("stack", "holder", "reason", "since"))
        if not (
            isinstance(stack, str)
            and isinstance(holder, str)
            and isinstance(reason, str)
            and isinstance(since, (int, float))
        ):
            return None
        return cls(stack, holder, reason, float(since))


def blocking(locks: Mapping[str, Lock], stack: str, user: str) -> Lock | None:
    """The lock that stops ``user`` changing ``stack``: its own, or the lock on everything;
    none when ``user`` holds it."""
    for key in (stack, ALL):
        lock = locks.get(key)
        if lock is not None and lock.holder != user:
            return lock
    return None


def refusal(lock: Lock, stack: str, prefix: str = "!", now: float | None = None) -> str:
    """What a refused change is told: who locked it, why, since when, and how it ends."""
    now = time.time() if now is None else now
    what = "every stack is" if lock.stack == ALL else f"{stack} is"
    since = time.strftime("%H:%M UTC", time.gmtime(lock.since))
    return (
        f"{what} locked by {lock.holder} since {since} ({ago(now - lock.since)} ago): "
        f"{lock.reason} — {lock.holder} unlocks it ({prefix}unlock {lock.stack}), or an admin "
        f"breaks the lock ({prefix}unlock {lock.stack} --break)"
    )
