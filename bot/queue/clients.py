"""Connection pools for both processes, to one Redis or to the master Redis Sentinel names.

``redis+sentinel://[:password@]host:port,host:port/<master name>[/<db>]`` reaches Redis
through Sentinel with redis-py's own support (``redis.sentinel``): each new connection
asks the sentinels where the master is, and a connection to a master that has been
demoted is dropped (redis-py turns READONLY into a connection error), so a failover is
followed like a Redis restart: the caller's retry reaches the new master. The URL form is
ours (redis-py reads none for Sentinel); every process already takes its Redis as one URL.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio as aioredis
import redis.asyncio.retry
import redis.asyncio.sentinel as aiosentinel
import redis.retry
import redis.sentinel
from redis.backoff import ExponentialBackoff

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


SENTINEL_SCHEME = "redis+sentinel://"


@dataclass(frozen=True)
class SentinelPlace:
    """Where the sentinels are, and which master of theirs is swarmbot's."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int
    password: str | None


def sentinel_place(url: str) -> SentinelPlace | None:
    """The Sentinel a ``redis+sentinel://`` URL names; None for any other URL; ValueError
    for one of that scheme that names no sentinel or no master."""
    if not url.startswith(SENTINEL_SCHEME):
        return None
    parts = urlsplit(url)
    hosts = parts.netloc.rpartition("@")[2]
    sentinels = []
    for host in hosts.split(","):
        name, _, port = host.rpartition(":")
        if not name or not port.isdigit():
            raise ValueError(f"{host!r} is not host:port")
        sentinels.append((name.strip("[]"), int(port)))
    path = [p for p in parts.path.split("/") if p]
    if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ValueError("the path must be /<master name> or /<master name>/<db>")
    password = unquote(parts.password) if parts.password else None
    return SentinelPlace(
        tuple(sentinels), path[0], int(path[1]) if len(path) == 2 else 0, password
    )


def _options() -> dict[str, Any]:
    return {
        "decode_responses": True,
        "encoding_errors": ENCODING_ERRORS,
        "socket_timeout": SOCKET_TIMEOUT,
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "health_check_interval": 30,
    }


# Through Sentinel, a command that finds no master (it died; the sentinels have not yet
# promoted a replica) is retried, each connection asking the sentinels again, for about as
# long as a failover takes (down-after 5 s in stacks/swarmbot.sentinel.yaml, then the
# election): the command is answered late rather than refused. A write retried after it
# was applied is a second entry of the same signed job, which the worker refuses as a
# replay; a plain Redis URL keeps failing at once (a restart is not waited for).
FAILOVER_RETRIES = 14
FAILOVER_BACKOFF = ExponentialBackoff(cap=1.0, base=0.05)
_RETRY_ON = [redis.ConnectionError, redis.TimeoutError]


class _FollowingConnection(redis.sentinel.SentinelManagedConnection):
    """A connection that, whenever it (re)connects, asks the sentinels where the master is.

    redis-py's own asks only when the pool opens a connection: one that broke and is
    reconnected while sending a command goes back to the address it had, so after a
    failover every pooled connection kept knocking at the dead master (measured: 10 s, all
    of the retries, though the sentinels named the new master after 3)."""

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if not self._sock:
            # One Sentinel-aware attempt: the command's own retry repeats it (connect()
            # would retry too, and the two multiplied to minutes with no master).
            self._connect_retry()  # type: ignore[no-untyped-call]
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]


class _AsyncFollowingConnection(aiosentinel.SentinelManagedConnection):
    """The asyncio side of ``_FollowingConnection``."""

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if not self.is_connected:
            await self._connect_retry()  # type: ignore[no-untyped-call]
        await super().send_packed_command(command, check_health)


class _Sentinel(redis.sentinel.Sentinel):
    """redis-py's Sentinel, one master discovery at a time.

    A discovery that finds the master moves the sentinel that answered to the head of
    its list by a swap, while other discoveries walk the same list: run side by side (the
    worker's threads, the bot's tasks) the swaps duplicated one sentinel over the others.
    Seen: after a failover every entry was the dead sentinel, and "No master found" for
    minutes, though two live sentinels named the new master."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._discovering = threading.Lock()

    def discover_master(self, service_name: str) -> Any:
        with self._discovering:
            return super().discover_master(service_name)


class _AsyncSentinel(aiosentinel.Sentinel):
    """The asyncio side of ``_Sentinel``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._discovering = asyncio.Lock()

    async def discover_master(self, service_name: str) -> Any:
        async with self._discovering:
            return await super().discover_master(service_name)


# Asking a sentinel where the master is: short, so that one dead sentinel (on the node that
# died with the master) costs a moment before the next is asked.
_SENTINEL_OPTIONS = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0}


def _sentinel_options(place: SentinelPlace) -> dict[str, Any]:
    """What both clients give redis-py's Sentinel besides their own kind of Retry."""
    return {
        "sentinel_kwargs": _SENTINEL_OPTIONS,
        "db": place.db,
        "password": place.password,
        "retry_on_error": _RETRY_ON,
        **_options(),
    }


def async_client(url: str) -> aioredis.Redis:
    place = sentinel_place(url)
    if place is not None:
        sentinel = _AsyncSentinel(
            place.sentinels,
            retry=redis.asyncio.retry.Retry(FAILOVER_BACKOFF, FAILOVER_RETRIES),
            **_sentinel_options(place),
        )
        master: aioredis.Redis = sentinel.master_for(
            place.master, connection_class=_AsyncFollowingConnection
        )
        return master
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=MAX_CONNECTIONS, timeout=CONNECTION_WAIT_SECONDS, **_options()
    )
    return aioredis.Redis(connection_pool=pool)


def sync_client(url: str) -> redis.Redis:
    place = sentinel_place(url)
    if place is not None:
        sentinel = _Sentinel(
            place.sentinels,
            retry=redis.retry.Retry(FAILOVER_BACKOFF, FAILOVER_RETRIES),
            **_sentinel_options(place),
        )
        client: redis.Redis = sentinel.master_for(
            place.master, connection_class=_FollowingConnection
        )
        return client
    pool = redis.BlockingConnectionPool.from_url(
        url, max_connections=MAX_CONNECTIONS, timeout=CONNECTION_WAIT_SECONDS, **_options()
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
