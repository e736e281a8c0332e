"""The bot's side of the queue: put signed jobs on it, read job records for ``!jobs``."""

from __future__ import annotations

import copy
import hashlib
import time
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis

from bot.core.config import Config
from bot.core.noticeroutes import targets
from bot.core.wire import Job, Result, encode_job
from bot.queue import records, scripts
from bot.queue.chatstate import ChatState
from bot.queue.confirmations import Confirmations
from bot.queue.consumer import post_result
from bot.queue.keys import WORKER_GROUP, Keys
from bot.queue.lockstore import AsyncLockStore
from bot.queue.replication import Transaction
from bot.queue.submit import ENTRY_REPLY, add_job
from bot.queue.swarmstore import SwarmRecords
from bot.queue.text import fields as as_fields
from bot.queue.text import s as _s
from bot.queue.text import wire


class JobQueue:
    """The bot's side: put signed jobs on the queue and read job records for ``!jobs``."""

    def __init__(self, client: aioredis.Redis, config: Config) -> None:
        self._redis = client
        self.keys = Keys(config.redis_prefix)
        self.prefix = config.redis_prefix
        self._secret = config.signing_secret
        self._ttl = config.job_ttl_seconds
        self._dead_after = config.worker_timeout_seconds
        self._swarm = SwarmRecords(client, self.keys, config.signing_secret)
        self._config = config

    @property
    def swarm(self) -> str:
        """The swarm this queue's jobs go to ("" for a bot of one swarm)."""
        return self.keys.swarm_name

    def on(self, swarm: str) -> JobQueue:
        """The same queue, its jobs and its swarm's state (locks, identity, watcher) those
        of ``swarm``: one client, the bot-wide keys (records, audit, confirmations) shared."""
        if swarm == self.keys.swarm_name:
            return self
        other = copy.copy(self)
        other.keys = self.keys.on(swarm)
        other._swarm = SwarmRecords(self._redis, other.keys, self._secret)
        return other

    async def submit(
        self,
        op: str,
        args: dict[str, str],
        requester: str,
        text: str,
        reply_to: dict[str, str],
        audit: dict[str, Any] | None = None,
        stack: str | None = None,
        job_id: str = "",
        read_only: bool = False,
        not_before: float = 0.0,
    ) -> Queued:
        """Put a signed job on the queue, in two round trips: its ID (unless the caller took
        one already, with the rate limit), then one transaction
        that writes its record, the entry, and its audit entry (``audit``'s fields plus the
        job's ID), and reads what the requester is told about when it will run: the job
        holding ``stack``'s lock, and the workers online."""
        if not job_id:
            job_id = _s(await self._redis.eval(scripts.NEXT_ID, 1, self.keys.job_seq))
        now = time.time()
        start = max(now, not_before)
        job = Job(
            job_id,
            op,
            args,
            requester,
            text[:512],
            reply_to,
            now,
            start + self._ttl,
            not_before,
            self.keys.swarm_name,
        )
        since = now - self._dead_after
        replicas, wait_ms = self._config.redis_replicas, self._config.redis_wait_ms
        async with Transaction(self._redis, replicas, wait_ms) as pipe:
            add_job(pipe, self.keys, job, self._secret, audit)
            if stack:
                pipe.get(self.keys.lock(stack))
            pipe.zrangebyscore(self.keys.workers, since, "+inf")
            pipe.hgetall(self.keys.load)
            replies = await pipe.execute(raise_on_error=False)
        if isinstance(replies[ENTRY_REPLY], Exception):
            await self._requeue(job, replies[ENTRY_REPLY])
        # A reply that failed (a key of another type) reads as nothing known.
        replies = [None if isinstance(r, Exception) else r for r in replies]
        holder = _s(replies[-3] or "") if stack else ""
        capacity = _capacity(replies[-2] or [], replies[-1] or {}, read_only)
        return Queued(job, holder, capacity, pipe.replicated)

    async def _requeue(self, job: Job, error: Exception) -> None:
        """The entry alone, again, after its XADD failed in the transaction (its record and
        audit entry were written): the queue key held something that is not a stream.
        It is renamed aside, as the worker does, and the entry added once more; any other
        failure is raised, and the user is told the job was not queued."""
        if "WRONGTYPE" not in str(error):
            raise error
        args = [WORKER_GROUP, str(int(time.time()))]
        await self._redis.eval(scripts.ENSURE_STREAM, 1, self.keys.jobs, *args)
        await self._redis.xadd(self.keys.jobs, wire(encode_job(job, self._secret)))

    async def record(self, job_id: str) -> dict[str, str]:
        """A job's record; empty when there is none, or it is not a hash."""
        try:
            return as_fields(await self._redis.hgetall(self.keys.record(job_id)))
        except redis.ResponseError:
            return {}

    async def cancel(self, job_id: str, by: str) -> str:
        """Mark a job cancelled if it has not started: "now-cancelled", or the state it is in."""
        key = self.keys.record(job_id)
        state = await self._redis.eval(scripts.CANCEL, 1, key, by, f"{time.time():.3f}")
        return _s(state)

    async def rate_window(
        self, user: str, now: float, member: str, limit: int, take_job_id: bool
    ) -> tuple[bool, str]:
        """One step of ``user``'s sliding one-minute window (``scripts.RATE``): (True, the
        next job ID if ``take_job_id``) within ``limit``; else (False, the time the oldest
        command in the window was counted)."""
        keys = [self.keys.rate(user), self.keys.job_seq]
        ok, value = await self._redis.eval(
            scripts.RATE, 2, *keys, f"{now:.6f}", member, limit, int(take_job_id)
        )
        return bool(ok), _s(value)

    async def refusal_place(self, user: str, now: float, member: str, limit: int) -> int:
        """Where this refusal falls in ``user``'s last minute of refusals (1 for the first)."""
        key = self.keys.refusals(user)
        return int(await self._redis.eval(scripts.REFUSALS, 1, key, f"{now:.6f}", member, limit))

    async def swarm_found(self) -> dict[str, dict[str, Any]]:
        return await self._swarm.found()

    async def swarm_accepted(self) -> str | None:
        return await self._swarm.accepted()

    async def accept_swarm(self, swarm_id: str, by: str) -> None:
        await self._swarm.accept(swarm_id, by)

    def locks(self) -> AsyncLockStore:
        return AsyncLockStore(self._redis, self.keys, self._secret)

    async def tell(self, stack: str, text: str, lines: tuple[str, ...] = ()) -> int:
        """A notice from the bot itself (a lock taken or lifted) to the rooms routed for
        ``stack``, by the same inboxes and lanes as the worker's; how many rooms."""
        places = targets(self._config, stack)
        text = self._config.tag(self.keys.swarm_name) + text
        digest = hashlib.sha256(f"{stack}|{text}|{time.time()}".encode()).hexdigest()[:16]
        async with self._redis.pipeline(transaction=True) as pipe:
            for target in places:
                data = {"text": text, "detail": list(lines), "id": digest, "status": "info"}
                post_result(
                    pipe,
                    self.keys,
                    Result("notice", "0", "notice", True, data, target),
                    self._secret,
                )
            await pipe.execute()
        return len(places)

    async def poke_watcher(self, word: str) -> None:
        """Wake the source watcher (as a push does): held changes are looked at again."""
        pokes = self.keys.watch("pokes")
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.rpush(pokes, word)
            pipe.expire(pokes, 3600)
            await pipe.execute()

    def chat_state(self, adapter: str) -> ChatState:
        """What the chat adapter ``adapter`` keeps in Redis (``bot.queue.chatstate``)."""
        return ChatState(self._redis, self.keys.adapter(adapter))

    def confirmations(self, ttl: int) -> Confirmations:
        """The pending confirmations, in the same Redis (``bot.queue.confirmations``)."""
        return Confirmations(self._redis, self.keys, ttl, self._secret)

    async def audit(self, **fields: Any) -> None:
        await records.record(self._redis, self.keys, **fields)

    async def audit_since(self, since: float) -> list[dict[str, str]]:
        return await records.read(self._redis, self.keys, since)

    async def recent(self, limit: int) -> list[dict[str, str]]:
        try:
            ids = await self._redis.zrevrange(self.keys.recent, 0, limit - 1)
        except redis.ResponseError:  # another type: someone wrote there; the next job mends it
            await self._redis.delete(self.keys.recent)
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hgetall(self.keys.record(_s(job_id)))
            rows = await pipe.execute(raise_on_error=False)
        # A record that is not a hash (someone wrote another type there) is left out.
        return [as_fields(row) for row in rows if isinstance(row, dict) and row]


@dataclass(frozen=True)
class Queued:
    """A job just queued, and what decides when it runs."""

    job: Job
    holder: str  # the job holding the lock on the job's stack, if any
    workers: tuple[int, int, int]  # online, free slots, total slots
    # A replica has it (redis.min_replicas; always with a plain Redis): only then is the
    # user told it is queued, for only then does a Redis failover not lose it.
    replicated: bool = True


def _capacity(live: list[Any], loads: dict[Any, Any], read_only: bool) -> tuple[int, int, int]:
    """(online, free, total) from the fresh heartbeats and each worker's load: "busy
    capacity read-busy read-capacity". A read-only job may also take a read slot. A load
    that is not numbers (written by someone else) counts as nothing free."""
    free = total = 0
    for load in (as_fields(loads).get(_s(w), "0 0") for w in live):
        words = [int(w) if w.isdigit() else 0 for w in load.split()[:4]]
        busy, capacity, read_busy, reads = [*words, 0, 0, 0, 0][:4]
        if read_only:
            busy, capacity = busy + read_busy, capacity + reads
        total += capacity
        free += max(0, capacity - busy)
    return len(live), free, total
