"""The worker's side of the queue (synchronous: the Docker SDK is synchronous).

Redis Streams with consumer groups give acknowledged delivery: an entry stays pending until
the worker acknowledges it, so a worker that dies mid-job finds the job again when it comes
back. "Publish result + acknowledge job + update record" is one MULTI transaction, so a job
is never both answered and left pending (which would answer it twice).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Iterator
from typing import Any, cast

import redis

from bot.core.audit import entry
from bot.core.config import Secret
from bot.core.ids import confirmation_code
from bot.core.scrub import masker
from bot.core.sealed import seal
from bot.core.wire import Job, Result, result_json, sign_result_json
from bot.queue import records, scripts, text
from bot.queue.changestore import ChangeStore
from bot.queue.clients import reachable
from bot.queue.errors import Unreplicated
from bot.queue.keys import (
    INBOX_MAXLEN,
    INBOX_TTL,
    LOCK_LEASE_MS,
    RETIRED_IDLE_MS,
    WORKER_GROUP,
    Keys,
)
from bot.queue.lease import Lease
from bot.queue.lockstore import HeldChanges, LockStore
from bot.queue.noticestore import NoticeStore
from bot.queue.replication import wait_after
from bot.queue.stats import publish_queue_metrics
from bot.queue.submit import add_job
from bot.queue.swarmstore import SwarmStore
from bot.queue.text import s as _s
from bot.queue.volumestore import VolumeStore
from bot.queue.watchstore import WatchStore

log = logging.getLogger("swarmbot.queue")

# A transaction the caller fills and ``batch`` executes (a redis-py pipeline).
Batch = redis.client.Pipeline


class WorkerQueue:
    """The worker's side of the queue (synchronous: the Docker SDK is synchronous)."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        secret: Secret,
        consumer: str,
        dead_after: float = 10,
        swarm: str = "",
        replicas: tuple[int, int] = (0, 0),
    ) -> None:
        self._redis = client
        # A worker silent for this long is dead: its unfinished jobs go to the others.
        self.dead_after = dead_after
        self.keys = Keys(prefix, swarm)
        # (replicas, ms): a job's start and its answer count once that many replicas have
        # them (bot.queue.replication); (0, 0) with a plain Redis.
        self.replicas, self.wait_ms = replicas
        self._secret = secret
        self.consumer = consumer
        # Sent by digest (EVALSHA), loaded again by redis-py if Redis restarted without it.
        self._take = client.register_script(scripts.TAKE)
        self._finish = client.register_script(scripts.FINISH)

    def ensure_group(self) -> None:
        """The queue's consumer group. A jobs key that is not a stream (someone wrote
        another type there) is renamed aside, kept for a look, and a new stream made:
        otherwise no worker could ever start, nor the bot queue anything."""
        args = [WORKER_GROUP, str(int(time.time()))]
        aside = _s(self._redis.eval(scripts.ENSURE_STREAM, 1, self.keys.jobs, *args))
        if aside:
            log.warning("%s was not a stream; renamed to %s", self.keys.jobs, aside)
            records.record_sync(
                self._redis, self.keys, decision="rejected", reason=f"jobs key set aside: {aside}"
            )

    def read(
        self, count: int, block_ms: int, pending: bool = False
    ) -> list[tuple[str, dict[Any, Any]]]:
        reply = self._redis.xreadgroup(
            WORKER_GROUP,
            self.consumer,
            {self.keys.jobs: "0" if pending else ">"},
            count=count,
            block=None if pending else block_ms,
        )
        return text.stream_entries(reply)

    def take(self, job_id: str, entry_id: str, ttl: int) -> str:
        """Take a job in one round trip: "replay" if another queue entry already carried it
        (the same entry again is a redelivery, a worker restarting, and passes),
        "cancelled" if it was cancelled before it started, else "started"."""
        args: list[str | int] = [entry_id, ttl, f"{time.time():.3f}", self.consumer]
        keys = [self.keys.seen(job_id), self.keys.record(job_id)]
        if self.replicas <= 0:
            return _s(self._take(keys=keys, args=args))
        # "unreplicated": no replica has the start yet. Nothing may run then: a failover
        # would forget it was taken, and the job would run again elsewhere.
        with self._redis.pipeline(transaction=False) as pipe:
            self._take(keys=keys, args=args, client=pipe)
            wait_after(pipe, self.replicas, self.wait_ms)
            taken, acked = pipe.execute()
        return _s(taken) if int(acked) >= self.replicas else "unreplicated"

    def start(self, job_id: str, state: str = "running") -> bool:
        """Mark a job running (or waiting for its stack); False if it was cancelled."""
        args = [state, f"{time.time():.3f}", self.consumer]
        return (
            _s(self._redis.eval(scripts.START, 1, self.keys.record(job_id), *args)) != "cancelled"
        )

    def record(self, job_id: str) -> dict[str, str]:
        return text.fields(self._redis.hgetall(self.keys.record(job_id)))

    def applied(self, job_id: str, step: str) -> float | None:
        """When a job's side effect (``step``) was applied, if it was: a job reclaimed after
        a crash must not apply it twice (a second forced update is a second restart)."""
        value = self._redis.hget(self.keys.record(job_id), f"applied:{step}")
        return float(value) if value else None

    def mark_applied(self, job_id: str, step: str, at: float) -> None:
        self._redis.hset(self.keys.record(job_id), f"applied:{step}", f"{at:.3f}")

    # -- heartbeats, dead workers and stack leases --------------------------------------

    def beat(self, locks: dict[str, str], load: tuple[int, ...] = (0, 0, 0, 0)) -> None:
        """Say this worker is alive and how busy it is (``load``: busy and total ordinary
        slots, busy and total read slots), and renew the leases on its jobs' stacks."""
        now = time.time()
        with self._redis.pipeline(transaction=False) as pipe:
            keys = [self.keys.workers, self.keys.load]
            words = " ".join(str(n) for n in load)
            pipe.eval(scripts.BEAT, 2, *keys, f"{now:.3f}", self.consumer, words)
            for stack, job_id in locks.items():
                pipe.eval(scripts.ACQUIRE, 1, self.keys.lock(stack), job_id, LOCK_LEASE_MS)
            pipe.execute()

    def retire(self) -> None:
        """This worker has stopped: drop its heartbeat so others need not wait for it to go
        stale before taking over what it left unacknowledged."""
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.zrem(self.keys.workers, self.consumer)
            pipe.hdel(self.keys.load, self.consumer)
            pipe.execute()

    def live_workers(self) -> set[str]:
        since = time.time() - self.dead_after
        return {_s(w) for w in self._redis.zrangebyscore(self.keys.workers, since, "+inf")}

    def reclaim(self) -> list[tuple[str, dict[Any, Any]]]:
        """Take over the unfinished jobs of workers that stopped.

        A worker whose heartbeat went stale (it crashed) is dead once it has been silent
        for ``dead_after``. One that retired (stopped cleanly and removed its heartbeat)
        is known to be gone at once; its entries only need to have sat for
        ``RETIRED_IDLE_MS``, which is what keeps two workers reclaiming at the same moment
        from both taking one entry (XCLAIM's minimum idle time fails the second).
        """
        now = time.time()
        beats = {
            _s(w): float(score)
            for w, score in cast(
                list[tuple[Any, float]],
                self._redis.zrange(self.keys.workers, 0, -1, withscores=True),
            )
        }
        dead_ms = int(self.dead_after * 1000)
        by_idle: dict[int, list[str]] = {}
        for p in self._redis.xpending_range(self.keys.jobs, WORKER_GROUP, "-", "+", 100):
            owner = _s(p["consumer"])
            if owner == self.consumer:
                continue
            if owner not in beats:
                idle = RETIRED_IDLE_MS
            elif beats[owner] < now - self.dead_after:
                idle = dead_ms
            else:
                continue  # alive
            if int(p["time_since_delivered"]) >= idle:
                by_idle.setdefault(idle, []).append(_s(p["message_id"]))
        out = []
        for idle, ids in by_idle.items():
            claimed = self._redis.xclaim(
                self.keys.jobs, WORKER_GROUP, self.consumer, idle, list[Any](ids)
            )
            out += text.entries(claimed)
        return out

    def try_lock(self, stack: str, job_id: str) -> str | None:
        """Take ``stack`` for ``job_id``; returns the holder's job ID if another job has it."""
        holder = self._redis.eval(scripts.ACQUIRE, 1, self.keys.lock(stack), job_id, LOCK_LEASE_MS)
        return _s(holder) or None

    def unlock(self, stack: str, job_id: str) -> None:
        self._redis.eval(scripts.RELEASE, 1, self.keys.lock(stack), job_id)

    def progress(self, result: Result, pipe: Any = None) -> None:
        """Post ``result`` to its inbox; within ``pipe`` (a transaction the caller executes)
        when given, so that it is posted together with the state that says it was."""
        if pipe is None:
            with self._redis.pipeline(transaction=True) as own:
                self.progress(result, own)
                own.execute()
            return
        post_result(pipe, self.keys, result, self._secret)

    def submit(self, job: Job, audit: dict[str, Any], pipe: Any) -> None:
        """Queue a job the worker itself decided on (a change deployed by policy), in
        ``pipe``: signed like the bot's, so it runs through the same checks."""
        add_job(pipe, self.keys, job, self._secret, audit)

    @contextlib.contextmanager
    def batch(self) -> Iterator[Batch]:
        """One transaction: the writes the caller puts in it (notices, proposals, watcher
        state, ...) happen together at the end of the block, or not at all."""
        with self._redis.pipeline(transaction=True) as pipe:
            yield pipe
            pipe.execute()

    def audit(self, fields: dict[str, Any], pipe: Batch | None = None) -> None:
        """An entry in the audit trail; within ``pipe`` when given."""
        if pipe is None:
            records.record_sync(self._redis, self.keys, **fields)
        else:
            records.add(pipe, self.keys, entry(records.swarmed(self.keys, fields)))

    def ask_approval(self, pending: dict[str, Any], ttl: int, pipe: Batch) -> str:
        """Leave a confirmation code for a change the worker proposes (in ``pipe``), sealed
        like the bot's own (``bot.queue.confirmations``); returns the code."""
        code = self._free_code()
        key = self.keys.confirmation(code)
        if self.keys.swarm_name:
            pending = {**pending, "swarm": self.keys.swarm_name}  # confirmed, it goes back here
        pipe.set(key, seal(self._secret, key, pending), ex=ttl)
        return code

    def _free_code(self) -> str:
        for _ in range(20):
            code = confirmation_code()
            try:
                if not self._redis.exists(self.keys.confirmation(code)):
                    return code
            except redis.RedisError:
                break
        return confirmation_code()

    def lease(self, key: str) -> Lease:
        """A lease named ``key`` held by this worker (``bot.queue.lease``)."""
        return Lease(self._redis, key, self.consumer)

    def notice_store(self, secret: Secret) -> NoticeStore:
        return NoticeStore(self._redis, self.keys, secret)

    def swarm_store(self, secret: Secret) -> SwarmStore:
        return SwarmStore(self._redis, self.keys, secret)

    def move_due(self, now: float) -> int:
        """Scheduled jobs now due, onto the queue (each once, across workers)."""
        args = [f"{now:.3f}", self.keys.scheduled_entry(""), self.keys.record("")]
        keys = [self.keys.scheduled, self.keys.jobs]
        return int(self._redis.eval(scripts.MOVE_DUE, 2, *keys, *args))

    def lock_store(self, secret: Secret) -> LockStore:
        return LockStore(self._redis, self.keys, secret)

    def held_changes(self, secret: Secret) -> HeldChanges:
        return HeldChanges(self._redis, self.keys, secret)

    def change_store(self, secret: Secret) -> ChangeStore:
        return ChangeStore(self._redis, self.keys, secret)

    def volume_store(self) -> VolumeStore:
        return VolumeStore(self._redis, self.keys)

    def watch_store(self) -> WatchStore:
        return WatchStore(self._redis, self.keys)

    def reachable(self) -> str:
        """ "" when Redis answers, else why not (for /healthz)."""
        return reachable(self._redis)

    def publish_metrics(self) -> None:
        publish_queue_metrics(
            self._redis, self.keys.prefix, self.dead_after, (self.keys.swarm_name,)
        )

    def next_job_id(self) -> str:
        return _s(self._redis.eval(scripts.NEXT_ID, 1, self.keys.job_seq))

    def _signed(self, result: Result) -> dict[str, str]:
        return signed_entry(result, self._secret)

    def finish(
        self,
        entry_id: str,
        result: Result,
        state: str,
        summary: str,
        audit: dict[str, str],
    ) -> None:
        """Answer, acknowledge, record and audit in one atomic script (one command, one
        round trip): never answered twice, never answered without its audit entry."""
        fields = self._signed(result)
        pairs = [str(x) for kv in audit.items() for x in kv]
        keys = [
            self.keys.audit,
            self.keys.inbox(result.reply_to["inbox"]),
            self.keys.record(result.job),
            self.keys.jobs,
        ]
        args: list[str | int] = [
            entry_id,
            WORKER_GROUP,
            INBOX_MAXLEN,
            INBOX_TTL,
            records.AUDIT_MAXLEN,
            state,
            f"{time.time():.3f}",
            summary[:300],
            fields["result"],
            fields["sig"],
            len(pairs) // 2,
            *pairs,
        ]
        if self.replicas <= 0:
            self._finish(keys=keys, args=args)
            return
        # The answer counts once a replica has it; else it is given again (FINISH answers a
        # job once: a second one finds it finished, and only acknowledges the entry).
        with self._redis.pipeline(transaction=False) as pipe:
            self._finish(keys=keys, args=args, client=pipe)
            wait_after(pipe, self.replicas, self.wait_ms)
            _done, acked = pipe.execute()
        if int(acked) < self.replicas:
            raise Unreplicated(f"no replica has the answer of job {result.job} yet")

    def reject(self, entry_id: str, reason: str, fields: dict[Any, Any]) -> None:
        """Drop a job that must not run; keep a capped trail of what was refused and why."""
        sample = json.dumps({_s(k): _s(v)[:200] for k, v in list(fields.items())[:4]})
        keys = [self.keys.rejected, self.keys.jobs]
        args = [entry_id, reason, sample, f"{time.time():.3f}", WORKER_GROUP]
        self._redis.eval(scripts.REJECT, 2, *keys, *args)


def signed_entry(result: Result, secret: Secret) -> dict[str, str]:
    """The inbox entry of ``result``: masked, written, signed.

    The one door every reply, progress line and notice leaves by (the worker's, and the
    alert receiver's): every secret the process holds is masked here, whichever code
    produced the text. Written once, searched once: masked and written again only if it may
    hold a secret."""
    body = result_json(result)
    if masker().may_be_in_json(body):
        body = result_json(dataclasses.replace(result, data=masker().data(result.data)))
    return sign_result_json(body, secret)


def post_result(pipe: Any, keys: Keys, result: Result, secret: Secret) -> None:
    """Put ``result`` on its adapter's inbox, in ``pipe``."""
    inbox = keys.inbox(result.reply_to["inbox"])
    fields = text.wire(signed_entry(result, secret))
    pipe.xadd(inbox, fields, maxlen=INBOX_MAXLEN, approximate=True)
    # An inbox nobody reads any more (a console that quit) must not live forever.
    pipe.expire(inbox, INBOX_TTL)
