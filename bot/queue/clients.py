"""Connection pools for both processes."""

from __future__ import annotations

import redis
import redis.asyncio as aioredis

# Commands arrive concurrently (Slack runs listeners side by side); a burst must wait for a
# free connection, not fail with "too many connections" and tell the user the queue is down.
MAX_CONNECTIONS = 64
CONNECTION_WAIT_SECONDS = 10
# Redis is shared infrastructure and anyone who can write to it can write any bytes: a
# reply that is not UTF-8 is decoded with U+FFFD in place of the bad bytes instead of
# raising UnicodeDecodeError out of whatever read it (which crash-looped both processes).
# The replaced text then fails every signature check and is set aside like any forgery.
ENCODING_ERRORS = "replace"
# Set here, not left to redis-py's default (5 s since 8.x, none before): every blocking
# read swarmbot makes (XREADGROUP, BLPOP) waits at most a few seconds, well inside it.
SOCKET_TIMEOUT = 10.0
CONNECT_TIMEOUT = 5.0

# The clients as the other packages name them: they hold one and hand it to a store here.
SyncClient = redis.Redis
AsyncClient = aioredis.Redis


def async_client(url: str) -> aioredis.Redis:
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        decode_responses=True,
        encoding_errors=ENCODING_ERRORS,
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=CONNECT_TIMEOUT,
        max_connections=MAX_CONNECTIONS,
        timeout=CONNECTION_WAIT_SECONDS,
        health_check_interval=30,
    )
    return aioredis.Redis(connection_pool=pool)


def sync_client(url: str) -> redis.Redis:
    pool = redis.BlockingConnectionPool.from_url(
        url,
        decode_responses=True,
        encoding_errors=ENCODING_ERRORS,
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=CONNECT_TIMEOUT,
        max_connections=MAX_CONNECTIONS,
        timeout=CONNECTION_WAIT_SECONDS,
        health_check_interval=30,
    )
    return redis.Redis(connection_pool=pool)


async def close(client: aioredis.Redis) -> None:
    """Close an async client's connections (the process is stopping)."""
    await client.aclose()


def reachable(client: redis.Redis) -> str:
    """ "" when Redis answers a PING, else why not (for /healthz)."""
    try:
        client.ping()
    except Exception as exc:  # any failure is the answer, never raised into a health check
        return str(exc) or type(exc).__name__
    return ""
