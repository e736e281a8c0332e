"""Putting one signed job on the queue: the writes both the bot (a chat command) and the
worker (a change its watcher deploys by policy) make, in the caller's own transaction."""

from __future__ import annotations

from typing import Any

from bot.core.audit import entry
from bot.core.config import Secret
from bot.core.wire import Job, encode_job
from bot.queue import records
from bot.queue.keys import RECENT_JOBS_KEPT, RECORD_TTL, Keys
from bot.queue.text import wire

# Where the queue entry's XADD is among add_job's commands: the one reply that says whether
# the job was queued (the others may fail on a key someone overwrote, and matter less).
ENTRY_REPLY = 4


def add_job(pipe: Any, keys: Keys, job: Job, secret: Secret, audit: dict[str, Any] | None) -> None:
    """Queue the writes of a new job on ``pipe`` (sync or asyncio, transaction or not): its
    record, its place among the recent jobs, the signed entry, and its audit entry."""
    scheduled = job.not_before > job.created
    record = {
        "id": job.id,
        "op": job.op,
        "text": job.text,
        "requester": job.requester,
        "state": "scheduled" if scheduled else "queued",
        "stack": job.stack,
        "created": f"{job.created:.3f}",
    }
    if scheduled:
        record["not_before"] = f"{job.not_before:.3f}"
    if job.swarm:
        record["swarm"] = job.swarm
    pipe.hset(keys.record(job.id), mapping=wire(record))
    pipe.expire(keys.record(job.id), RECORD_TTL + int(max(0.0, job.not_before - job.created)))
    pipe.zadd(keys.recent, {job.id: job.created})
    pipe.zremrangebyrank(keys.recent, 0, -RECENT_JOBS_KEPT - 1)
    if scheduled:
        # Waits in the schedule; a worker moves it onto the queue when it is due (MOVE_DUE).
        pipe.hset(keys.scheduled_entry(job.id), mapping=wire(encode_job(job, secret)))
        pipe.zadd(keys.scheduled, {job.id: job.not_before})
    else:
        pipe.xadd(keys.jobs, wire(encode_job(job, secret)))  # ENTRY_REPLY
    if audit is not None:
        stack = audit.get("stack") or job.stack  # the command's stack, or its service's
        fields = {**audit, "stack": stack, "job": job.id}
        records.add(pipe, keys, entry({"swarm": job.swarm, **fields} if job.swarm else fields))
