"""Connection pools for both processes."""

from __future__ import annotations

import redis
import redis.asyncio as aioredis

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
