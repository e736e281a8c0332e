"""What the notice watcher and the jobs keep in Redis so that every change is told once.

- Claims: a job holds its stack or service while it runs (the watcher leaves it alone).
- Markers, sealed (``bot.core.sealed``): "expected" (a job made this state and tells it
  itself: consumed once seen) and "made" (the spec a job left a service with; the drift
  check reads it too). One written by anyone but swarmbot matches nothing, and the change
  is told.
- The watcher's state: what it saw on its last look (services, nodes), the outside changes
  held for their quiet period, and the nodes whose tasks are moving. A key someone
  replaced with another type is deleted and read as empty: the state is the watcher's own
  to re-derive.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import redis

from bot.core.config import Secret
from bot.core.sealed import Forged, seal, unseal
from bot.queue.keys import Keys
from bot.queue.scripts import NEXT_ID
from bot.queue.text import s as text

log = logging.getLogger("swarmbot.notices")

EXPECTED_TTL = 3600  # a service marker: consumed by the first look after its job
# A node's availability is expected just before the job sets it: the watcher sees it within
# a poll. Longer, a marker the watcher never consumed could hide a later hand change.
NODE_EXPECTED_TTL = 120


@dataclass
class WatcherState:
    """What the last look saw, as stored (raw text: the watcher parses and checks it)."""

    services: dict[str, str]  # service ID -> JSON summary
    pending: str | None  # JSON: stack -> held change
    nodes: str | None  # JSON: node ID -> host, status, availability
    moving: dict[str, str]  # down node ID -> JSON: host, services it ran
    swarm: str = ""  # the swarm these were seen in


class NoticeStore:
    def __init__(self, client: redis.Redis, keys: Keys, secret: Secret) -> None:
        self._redis = client
        self.keys = keys
        self._secret = secret
        self._state = keys.notice("state")
        self._pending = keys.notice("pending")
        self._nodes = keys.notice("nodes")
        self._moving = keys.notice("moving")
        self._swarm = keys.notice("swarm")

    # -- claims ---------------------------------------------------------------------------

    def claim(self, names: Iterable[str], job: str, seconds: float) -> None:
        with self._redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.set(self._claim(name), job, ex=int(seconds) + 1)
            pipe.execute()

    def release(
        self, names: Iterable[str], made: Mapping[str, str], removed: Collection[str] = ()
    ) -> None:
        """Drop the claims, and mark the specs the job made (service ID -> spec hash) and
        the services it removed as expected, in one transaction: no watcher sees the claims
        gone before the specs are marked."""
        with self._redis.pipeline(transaction=True) as pipe:
            for name in names:
                pipe.delete(self._claim(name))
            for sid, spec in made.items():
                self._mark(pipe, f"expected:{sid}", spec)
                self._mark(pipe, f"made:{sid}", spec)
            for sid in removed:
                self._mark(pipe, f"expected:{sid}", "removed")
            pipe.execute()

    def claimed_among(self, names: Collection[str]) -> set[str]:
        """Which of these stacks or services a job holds now (one round trip)."""
        names = [n for n in names if n]
        if not names:
            return set()
        held = self._redis.mget([self._claim(n) for n in names])
        return {n for n, job in zip(names, held, strict=True) if job}

    def _claim(self, name: str) -> str:
        return self.keys.notice(f"claim:{name}")

    # -- markers --------------------------------------------------------------------------

    def expect(self, object_id: str, state: str) -> None:
        """A job is about to put ``object_id`` (a node) in ``state`` and tells it itself."""
        with self._redis.pipeline(transaction=False) as pipe:
            self._mark(pipe, f"expected:{object_id}", state, NODE_EXPECTED_TTL)
            pipe.execute()

    def expected(self, object_ids: Collection[str]) -> dict[str, str]:
        """The state a job said it made, per object (only genuine markers)."""
        ids = list(object_ids)
        if not ids:
            return {}
        raws = self._redis.mget([self.keys.notice(f"expected:{i}") for i in ids])
        found = {i: self._unsealed(f"expected:{i}", raw) for i, raw in zip(ids, raws, strict=True)}
        return {i: state for i, state in found.items() if state is not None}

    def consume(self, object_ids: Collection[str]) -> None:
        """Markers seen: each tells one change, once."""
        if object_ids:
            self._redis.delete(*(self.keys.notice(f"expected:{i}") for i in object_ids))

    def made(self, service_ids: Collection[str]) -> dict[str, str]:
        """The spec hash a job left each service with (within the last hour)."""
        ids = list(service_ids)
        if not ids:
            return {}
        raws = self._redis.mget([self.keys.notice(f"made:{i}") for i in ids])
        found = {i: self._unsealed(f"made:{i}", raw) for i, raw in zip(ids, raws, strict=True)}
        return {i: spec for i, spec in found.items() if spec is not None}

    def _mark(self, pipe: Any, what: str, state: str, ttl: int = EXPECTED_TTL) -> None:
        key = self.keys.notice(what)
        pipe.set(key, seal(self._secret, key, state), ex=ttl)

    def _unsealed(self, what: str, raw: Any) -> str | None:
        if raw is None:
            return None
        key = self.keys.notice(what)
        try:
            value = unseal(self._secret, key, raw)
        except Forged as exc:
            log.warning("notice marker %s refused: %s", what, exc)
            return None
        return value if isinstance(value, str) else None

    # -- the watcher's state --------------------------------------------------------------

    def read(self, only: Collection[str] | None = None) -> WatcherState:
        """What the last look saw: of every service, or of these alone."""
        keys = (self._state, self._pending, self._nodes, self._moving, self._swarm)
        wanted = sorted(only) if only is not None else None
        with self._redis.pipeline(transaction=False) as pipe:
            if wanted is None:
                pipe.hgetall(self._state)
            elif wanted:
                pipe.hmget(self._state, wanted)
            else:
                pipe.exists(self._state)  # keeps the replies in place; type-checks nothing
            pipe.get(self._pending)
            pipe.get(self._nodes)
            pipe.hgetall(self._moving)
            pipe.get(self._swarm)
            replies = pipe.execute(raise_on_error=False)
        broken = [k for k, r in zip(keys, replies, strict=True) if isinstance(r, Exception)]
        if broken:
            log.warning("notice watcher: %s of another type; starting over", ", ".join(broken))
            self._redis.delete(*broken)
            return WatcherState({}, None, None, {})
        services, pending, nodes, moving, swarm = replies
        if wanted is not None:
            values = services if wanted else []
            services = {k: v for k, v in zip(wanted, values, strict=True) if v is not None}
        return WatcherState(services, pending, nodes, moving, text(swarm or ""))

    def save(
        self,
        services: Mapping[str, Any],
        pending: Mapping[str, Any],
        nodes: Mapping[str, Any] | None,
        moving: Mapping[str, str],
        poke: str | None = None,
        swarm: str = "",
        gone: Collection[str] | None = None,
    ) -> None:
        """What this look saw, in one transaction; with ``poke``, a word for the source
        watcher (a stack from git changed: compare it with its file). ``gone`` None: the
        look saw every service, and ``services`` replaces what was kept; else it saw some,
        which replace their own entries, and ``gone`` (removed) are dropped. ``nodes`` None:
        the nodes were not looked at, and stay as kept."""
        with self._redis.pipeline(transaction=True) as pipe:
            if gone is None:
                pipe.delete(self._state, self._pending, self._moving)
            else:
                pipe.delete(self._pending, self._moving)
                if gone:
                    pipe.hdel(self._state, *gone)
            if nodes is not None:
                pipe.set(self._nodes, json.dumps(nodes))
            pipe.set(self._swarm, swarm)
            if moving:
                pipe.hset(self._moving, mapping=dict[Any, Any](moving))
            if services:
                pipe.hset(self._state, mapping={k: json.dumps(v) for k, v in services.items()})
            if pending:
                pipe.set(self._pending, json.dumps(pending))
            if poke:
                pipe.rpush(self.keys.watch("pokes"), poke)
            # For operators and tests; a counter overwritten by someone is set aside.
            pipe.eval(NEXT_ID, 1, self.keys.notice("refreshes"))
            pipe.execute()
