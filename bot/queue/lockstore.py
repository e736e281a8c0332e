"""Stack locks in Redis: one hash, a sealed record per stack (``bot.core.locks``). The bot
takes and lifts them (``!lock``, ``!unlock``); the worker reads them before every change
and before applying a change proposed from git or the registry. A record that is not
sealed is no lock: forging one must not stop deploys, and must not lift a real one either
(a real one cannot be overwritten but by ``HSET``, which the seal check then refuses)."""

from __future__ import annotations

import logging
from typing import Any

import redis
import redis.asyncio as aioredis

from bot.core.config import Secret
from bot.core.locks import Lock
from bot.core.sealed import Forged, seal, unseal
from bot.queue.errors import WrongType
from bot.queue.keys import Keys

log = logging.getLogger("swarmbot.locks")


def _read(secret: Secret, key: str, raw: dict[Any, Any]) -> dict[str, Lock]:
    found: dict[str, Lock] = {}
    for stack, value in raw.items():
        try:
            lock = Lock.from_dict(unseal(secret, f"{key}:{stack}", value))
        except Forged as exc:
            log.warning("lock on %s refused: %s", stack, exc)
            continue
        if lock is not None and lock.stack == stack:
            found[str(stack)] = lock
    return found


class LockStore:
    """The worker's side: reads."""

    def __init__(self, client: redis.Redis, keys: Keys, secret: Secret) -> None:
        self._redis = client
        self._key = keys.locks()
        self._secret = secret

    def all(self) -> dict[str, Lock]:
        try:
            raw = self._redis.hgetall(self._key)
        except WrongType:
            return {}
        return _read(self._secret, self._key, raw)


class AsyncLockStore:
    """The bot's side: takes, lifts and lists them."""

    def __init__(self, client: aioredis.Redis, keys: Keys, secret: Secret) -> None:
        self._redis = client
        self._key = keys.locks()
        self._secret = secret

    async def all(self) -> dict[str, Lock]:
        try:
            raw = await self._redis.hgetall(self._key)
        except WrongType:
            return {}
        return _read(self._secret, self._key, raw)

    async def put(self, lock: Lock) -> None:
        field = lock.stack
        value = seal(self._secret, f"{self._key}:{field}", lock.as_dict())
        await self._redis.hset(self._key, field, value)

    async def drop(self, stack: str) -> None:
        await self._redis.hdel(self._key, stack)


class HeldChanges:
    """Changes proposed from git or the registry that wait for a lock or a window to go,
    per stack (the latest proposal wins), sealed: the watcher proposes them again when
    nothing holds them any more."""

    def __init__(self, client: redis.Redis, keys: Keys, secret: Secret) -> None:
        self._redis = client
        self._key = keys.held()
        self._secret = secret

    def put(self, stack: str, proposal: dict[str, Any], pipe: Any) -> None:
        pipe.hset(self._key, stack, seal(self._secret, f"{self._key}:{stack}", proposal))

    def drop(self, stack: str, pipe: Any) -> None:
        pipe.hdel(self._key, stack)

    def all(self) -> dict[str, dict[str, Any]]:
        try:
            raw = self._redis.hgetall(self._key)
        except WrongType:
            return {}
        found: dict[str, dict[str, Any]] = {}
        for stack, value in dict(raw).items():
            stack = str(stack)
            try:
                proposal = unseal(self._secret, f"{self._key}:{stack}", value)
            except Forged as exc:
                log.warning("held change for %s refused: %s", stack, exc)
                continue
            if isinstance(proposal, dict):
                found[stack] = proposal
        return found
