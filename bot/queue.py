"""The Redis side of the job flow: one stream of jobs, one stream of results per inbox.

Redis Streams with consumer groups give acknowledged delivery: an entry stays pending until
the worker acknowledges it, so a worker that dies mid-job finds the job again when it comes
back, and a bot that dies before posting a result finds the result again. The worker's
"publish result + acknowledge job + update record" is one MULTI transaction, so a job is
never both answered and left pending (which would answer it twice).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis

from bot.config import Config, Secret
from bot.jobs import (
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
RECORD_TTL = 7 * 86400
INBOX_MAXLEN = 10_000
INBOX_TTL = 7 * 86400


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


class JobQueue:
    """The bot's side: put signed jobs on the queue and read job records for ``!jobs``."""

    def __init__(self, client: aioredis.Redis, config: Config) -> None:
        self._redis = client
        self._keys = Keys(config.redis_prefix)
        self._secret = config.signing_secret
        self._ttl = config.job_ttl_seconds

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

    async def recent(self, limit: int) -> list[dict[str, str]]:
        ids = await self._redis.zrevrange(self._keys.recent, 0, limit - 1)
        async with self._redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hgetall(self._keys.record(_s(job_id)))
            rows = await pipe.execute()
        return [{_s(k): _s(v) for k, v in row.items()} for row in rows if row]


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

    def __init__(self, client: redis.Redis, prefix: str, secret: Secret, consumer: str) -> None:
        self._redis = client
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

    def mark_running(self, job_id: str) -> None:
        self._redis.hset(
            self.keys.record(job_id), mapping={"state": "running", "started": f"{time.time():.3f}"}
        )

    def progress(self, result: Result) -> None:
        with self._redis.pipeline(transaction=True) as pipe:
            self._post(pipe, result)
            pipe.execute()

    def _post(self, pipe: redis.client.Pipeline, result: Result) -> None:
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
