"""The Redis side of the job flow: one stream of jobs, one stream of results per inbox.

Redis Streams with consumer groups give acknowledged delivery: an entry stays pending until
the worker acknowledges it, so a worker that dies mid-job finds the job again when it comes
back, and a bot that dies before posting a result finds the result again. The worker's
"publish result + acknowledge job + update record" is one MULTI transaction, so a job is
never both answered and left pending (which would answer it twice).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis

from bot.core.config import Config, Secret
from bot.core.scrub import masker
from bot.core.wire import (
    Job,
    Rejected,
    Result,
    decode_result,
    encode_job,
    encode_result,
)

log = logging.getLogger(__name__)

WORKER_GROUP = "workers"
BOT_GROUP = "bot"
RECENT_JOBS_KEPT = 500
HEARTBEAT_SECONDS = 1.0
RETIRED_IDLE_MS = 2000  # see WorkerQueue.reclaim
LOCK_LEASE_MS = 30_000
RECORD_TTL = 7 * 86400
INBOX_MAXLEN = 10_000
INBOX_TTL = 7 * 86400


# Commands arrive concurrently (Slack runs listeners side by side); a burst must wait for a
# free connection, not fail with "too many connections" and tell the user the queue is down.
MAX_CONNECTIONS = 64
CONNECTION_WAIT_SECONDS = 10


def async_client(url: str) -> aioredis.Redis:
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        decode_responses=True,
        max_connections=MAX_CONNECTIONS,
        timeout=CONNECTION_WAIT_SECONDS,
        health_check_interval=30,
    )
    return aioredis.Redis(connection_pool=pool)


def sync_client(url: str) -> redis.Redis:
    pool = redis.BlockingConnectionPool.from_url(
        url,
        decode_responses=True,
        max_connections=MAX_CONNECTIONS,
        timeout=CONNECTION_WAIT_SECONDS,
        health_check_interval=30,
    )
    return redis.Redis(connection_pool=pool)


@dataclass(frozen=True)
class Keys:
    prefix: str

    @property
    def jobs(self) -> str:
        return f"{self.prefix}:jobs"

    @property
    def job_seq(self) -> str:
        return f"{self.prefix}:job-seq"

    @property
    def recent(self) -> str:
        return f"{self.prefix}:recent"

    @property
    def rejected(self) -> str:
        return f"{self.prefix}:rejected"

    def record(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def inbox(self, name: str) -> str:
        return f"{self.prefix}:inbox:{name}"

    def seen(self, job_id: str) -> str:
        return f"{self.prefix}:seen:{job_id}"

    @property
    def workers(self) -> str:
        return f"{self.prefix}:workers"

    @property
    def load(self) -> str:
        """Per worker: "busy capacity", its working jobs and its concurrency."""
        return f"{self.prefix}:worker-load"

    def lock(self, stack: str) -> str:
        return f"{self.prefix}:lock:{stack}"

    @property
    def audit(self) -> str:
        return f"{self.prefix}:audit"


class JobQueue:
    """The bot's side: put signed jobs on the queue and read job records for ``!jobs``."""

    def __init__(self, client: aioredis.Redis, config: Config) -> None:
        self._redis = client
        self.redis = client  # for the policy layer in front of the queue (audit, limits)
        self._keys = Keys(config.redis_prefix)
        self.prefix = config.redis_prefix
        self._secret = config.signing_secret
        self._ttl = config.job_ttl_seconds
        self._dead_after = config.worker_timeout_seconds

    async def submit(
        self, op: str, args: dict[str, str], requester: str, text: str, reply_to: dict[str, str]
    ) -> Job:
        job_id = str(await self._redis.incr(self._keys.job_seq))
        now = time.time()
        job = Job(job_id, op, args, requester, text[:512], reply_to, now, now + self._ttl)
        record = {
            "id": job_id,
            "op": op,
            "text": job.text,
            "requester": requester,
            "state": "queued",
            "created": f"{now:.3f}",
        }
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._keys.record(job_id), mapping=record)
            pipe.expire(self._keys.record(job_id), RECORD_TTL)
            pipe.zadd(self._keys.recent, {job_id: now})
            pipe.zremrangebyrank(self._keys.recent, 0, -RECENT_JOBS_KEPT - 1)
            pipe.xadd(self._keys.jobs, encode_job(job, self._secret))
            await pipe.execute()
        return job

    async def workers_online(self) -> int:
        """Workers whose heartbeat is fresh."""
        since = time.time() - self._dead_after
        return int(await self._redis.zcount(self._keys.workers, since, "+inf"))

    async def free_slots(self) -> tuple[int, int]:
        """(free, total) job slots over the workers whose heartbeat is fresh."""
        since = time.time() - self._dead_after
        live = [_s(w) for w in await self._redis.zrangebyscore(self._keys.workers, since, "+inf")]
        if not live:
            return 0, 0
        loads = await self._redis.hmget(self._keys.load, live)
        free = total = 0
        for load in loads:
            busy, _, capacity = _s(load or "0 0").partition(" ")
            total += int(capacity or 0)
            free += max(0, int(capacity or 0) - int(busy or 0))
        return free, total

    async def record(self, job_id: str) -> dict[str, str]:
        return await self._redis.hgetall(self._keys.record(job_id))

    async def cancel(self, job_id: str, by: str) -> str:
        """Mark a job cancelled if it has not started: "now-cancelled", or the state it is in."""
        key = self._keys.record(job_id)
        state = await self._redis.eval(_CANCEL, 1, key, by, f"{time.time():.3f}")
        return _s(state)

    async def holder(self, stack: str) -> dict[str, str] | None:
        """The job holding ``stack``'s lock, if any: what a new job will queue behind."""
        job_id = await self._redis.get(self._keys.lock(stack))
        if not job_id:
            return None
        return await self.record(_s(job_id)) or None

    async def recent(self, limit: int) -> list[dict[str, str]]:
        ids = await self._redis.zrevrange(self._keys.recent, 0, limit - 1)
        async with self._redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hgetall(self._keys.record(_s(job_id)))
            rows = await pipe.execute()
        return [{_s(k): _s(v) for k, v in row.items()} for row in rows if row]


# Cancel only what has not started: check and set in one step, so a worker picking the job
# up at the same moment either sees the cancellation or the canceller sees "running".
_CANCEL = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'unknown' end
if state == 'queued' or state == 'waiting' then
  redis.call('HSET', KEYS[1], 'state', 'cancelled', 'cancelled_by', ARGV[1], 'finished', ARGV[2],
             'summary', 'cancelled by ' .. ARGV[1])
  return 'now-cancelled'
end
return state
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if not holder or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ''
end
return holder
"""
_START = """
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'cancelled' then return 'cancelled' end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'started', ARGV[2], 'worker', ARGV[3])
return state or ''
"""


class Inbox:
    """Results and progress for one bot process, read through a consumer group."""

    def __init__(self, client: aioredis.Redis, config: Config, name: str) -> None:
        self.name = name
        self._redis = client
        self._key = Keys(config.redis_prefix).inbox(name)
        self._secret = config.signing_secret

    async def ensure(self) -> None:
        try:
            await self._redis.xgroup_create(self._key, BOT_GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read(
        self, consumer: str, block_ms: int, pending: bool = False
    ) -> list[tuple[str, Result]]:
        """Results not yet handled; with ``pending`` the ones this consumer got but did not ack."""
        reply = await self._redis.xreadgroup(
            BOT_GROUP,
            consumer,
            {self._key: "0" if pending else ">"},
            count=50,
            block=None if pending else block_ms,
        )
        out: list[tuple[str, Result]] = []
        for _stream, entries in reply or []:
            for entry_id, fields in entries:
                eid = _s(entry_id)
                try:
                    out.append((eid, decode_result(fields, self._secret)))
                except Rejected as exc:
                    log.warning("dropping inbox entry %s: %s", eid, exc)
                    await self.ack(eid)
        return out

    async def ack(self, entry_id: str) -> None:
        await self._redis.xack(self._key, BOT_GROUP, entry_id)

    async def delete(self) -> None:
        await self._redis.delete(self._key)


class WorkerQueue:
    """The worker's side of the queue (synchronous: the Docker SDK is synchronous)."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        secret: Secret,
        consumer: str,
        dead_after: float = 10,
    ) -> None:
        self._redis = client
        self.redis = client
        # A worker silent for this long is dead: its unfinished jobs go to the others.
        self.dead_after = dead_after
        self.keys = Keys(prefix)
        self._secret = secret
        self.consumer = consumer

    def ensure_group(self) -> None:
        try:
            self._redis.xgroup_create(self.keys.jobs, WORKER_GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

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
        return [(_s(eid), fields) for _stream, entries in reply or [] for eid, fields in entries]

    def claim_first_delivery(self, job_id: str, entry_id: str, ttl: int) -> bool:
        """Record that ``entry_id`` carries ``job_id``; False if another entry already did.

        A redelivery of the same entry (this worker restarting) passes; the same job in a
        new entry is a replay and fails.
        """
        key = self.keys.seen(job_id)
        if self._redis.set(key, entry_id, nx=True, ex=ttl):
            return True
        return _s(self._redis.get(key)) == entry_id

    def start(self, job_id: str, state: str = "running") -> bool:
        """Mark a job running (or waiting for its stack); False if it was cancelled."""
        args = [state, f"{time.time():.3f}", self.consumer]
        return _s(self._redis.eval(_START, 1, self.keys.record(job_id), *args)) != "cancelled"

    def record(self, job_id: str) -> dict[str, str]:
        return self._redis.hgetall(self.keys.record(job_id))

    def applied(self, job_id: str, step: str) -> float | None:
        """When a job's side effect (``step``) was applied, if it was: a job reclaimed after
        a crash must not apply it twice (a second forced update is a second restart)."""
        value = self._redis.hget(self.keys.record(job_id), f"applied:{step}")
        return float(value) if value else None

    def mark_applied(self, job_id: str, step: str, at: float) -> None:
        self._redis.hset(self.keys.record(job_id), f"applied:{step}", f"{at:.3f}")

    # -- heartbeats, dead workers and stack leases --------------------------------------

    def beat(self, locks: dict[str, str], load: tuple[int, int] = (0, 0)) -> None:
        """Say this worker is alive and how busy it is (``load``: busy and total slots), and
        renew the leases on the stacks its jobs hold."""
        now = time.time()
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.zadd(self.keys.workers, {self.consumer: now})
            pipe.hset(self.keys.load, self.consumer, f"{load[0]} {load[1]}")
            pipe.zremrangebyscore(self.keys.workers, "-inf", now - 3600)
            for stack, job_id in locks.items():
                pipe.eval(_ACQUIRE, 1, self.keys.lock(stack), job_id, LOCK_LEASE_MS)
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
            _s(w): score
            for w, score in self._redis.zrange(self.keys.workers, 0, -1, withscores=True)
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
            if p["time_since_delivered"] >= idle:
                by_idle.setdefault(idle, []).append(p["message_id"])
        out = []
        for idle, ids in by_idle.items():
            claimed = self._redis.xclaim(self.keys.jobs, WORKER_GROUP, self.consumer, idle, ids)
            out += [(_s(eid), fields) for eid, fields in claimed if fields]
        return out

    def try_lock(self, stack: str, job_id: str) -> str | None:
        """Take ``stack`` for ``job_id``; returns the holder's job ID if another job has it."""
        holder = self._redis.eval(_ACQUIRE, 1, self.keys.lock(stack), job_id, LOCK_LEASE_MS)
        return _s(holder) or None

    def unlock(self, stack: str, job_id: str) -> None:
        self._redis.eval(_RELEASE, 1, self.keys.lock(stack), job_id)

    def progress(self, result: Result) -> None:
        with self._redis.pipeline(transaction=True) as pipe:
            self._post(pipe, result)
            pipe.execute()

    def _post(self, pipe: redis.client.Pipeline, result: Result) -> None:
        # The one door every reply, progress line and notice leaves the worker by: every
        # secret the worker holds is masked here, whichever code produced the text.
        result = dataclasses.replace(result, data=masker().data(result.data))
        inbox = self.keys.inbox(result.reply_to["inbox"])
        pipe.xadd(
            inbox, encode_result(result, self._secret), maxlen=INBOX_MAXLEN, approximate=True
        )
        # An inbox nobody reads any more (a console that quit) must not live forever.
        pipe.expire(inbox, INBOX_TTL)

    def finish(self, entry_id: str, result: Result | None, state: str, summary: str) -> None:
        """Answer, acknowledge and record in one transaction: never answered twice."""
        with self._redis.pipeline(transaction=True) as pipe:
            if result is not None:
                self._post(pipe, result)
                pipe.hset(
                    self.keys.record(result.job),
                    mapping={
                        "state": state,
                        "finished": f"{time.time():.3f}",
                        "summary": summary[:300],
                    },
                )
            pipe.xack(self.keys.jobs, WORKER_GROUP, entry_id)
            pipe.execute()

    def reject(self, entry_id: str, reason: str, fields: dict[Any, Any]) -> None:
        """Drop a job that must not run; keep a capped trail of what was refused and why."""
        sample = json.dumps({_s(k): _s(v)[:200] for k, v in list(fields.items())[:4]})
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.xadd(
                self.keys.rejected,
                {
                    "entry": entry_id,
                    "reason": reason,
                    "sample": sample,
                    "at": f"{time.time():.3f}",
                },
                maxlen=1000,
                approximate=True,
            )
            pipe.xack(self.keys.jobs, WORKER_GROUP, entry_id)
            pipe.execute()


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def queue_stats(client: redis.Redis, prefix: str, dead_after: float) -> dict[str, float]:
    """Depth of the job queue, age of its oldest unanswered job, age of the freshest worker
    heartbeat: the figures an operator alerts on."""
    keys = Keys(prefix)
    depth, oldest = 0.0, 0.0
    if client.exists(keys.jobs):
        for group in client.xinfo_groups(keys.jobs):
            if _s(group["name"]) == WORKER_GROUP:
                depth = float((group.get("lag") or 0) + (group.get("pending") or 0))
        first_pending = client.xpending(keys.jobs, WORKER_GROUP).get("min")
        undelivered = client.xrange(keys.jobs, f"({group_last(client, keys.jobs)}", "+", count=1)
        ids = [
            i
            for i in [
                _s(first_pending) if first_pending else "",
                undelivered[0][0] if undelivered else "",
            ]
            if i
        ]
        if ids:
            oldest = max(0.0, time.time() - min(int(_s(i).split("-")[0]) for i in ids) / 1000)
    beats = client.zrevrange(keys.workers, 0, 0, withscores=True)
    heartbeat = time.time() - beats[0][1] if beats else float("inf")
    return {"depth": depth, "oldest": oldest, "heartbeat": heartbeat}


def group_last(client: redis.Redis, stream: str) -> str:
    for group in client.xinfo_groups(stream):
        if _s(group["name"]) == WORKER_GROUP:
            return _s(group["last-delivered-id"])
    return "0-0"
