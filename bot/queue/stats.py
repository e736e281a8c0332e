"""The figures an operator alerts on, read from Redis by both processes' /metrics."""

from __future__ import annotations

import time

import redis

from bot.core import health
from bot.queue.keys import WORKER_GROUP, Keys
from bot.queue.text import s as _s


def queue_stats(
    client: redis.Redis, prefix: str, dead_after: float, swarm: str = ""
) -> dict[str, float]:
    """Depth of ``swarm``'s job queue, age of its oldest unanswered job, age of its
    freshest worker heartbeat: the figures an operator alerts on."""
    keys = Keys(prefix, swarm)
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
    heartbeat = time.time() - float(beats[0][1]) if beats else float("inf")
    return {"depth": depth, "oldest": oldest, "heartbeat": heartbeat}


def group_last(client: redis.Redis, stream: str) -> str:
    for group in client.xinfo_groups(stream):
        if _s(group["name"]) == WORKER_GROUP:
            return _s(group["last-delivered-id"])
    return "0-0"


def publish_queue_metrics(
    client: redis.Redis, prefix: str, dead_after: float, swarms: tuple[str, ...] = ("",)
) -> None:
    """Set the queue gauges of /metrics (both processes serve them) from ``queue_stats``,
    per swarm: the bot's all, a worker's its own."""
    for swarm in swarms:
        stats = queue_stats(client, prefix, dead_after, swarm)
        health.QUEUE_DEPTH.labels(swarm).set(stats["depth"])
        health.OLDEST_JOB.labels(swarm).set(stats["oldest"])
        health.HEARTBEAT_AGE.labels(swarm).set(stats["heartbeat"])
