"""What a Redis failure looks like to the rest of the bot.

Only ``bot.queue`` talks to Redis (``make lint`` forbids the library anywhere else), so
the chat and swarm sides catch these names rather than redis-py's own: the queue's owner
decides what a store failure is, and swapping the client library touches this package only.
"""

from __future__ import annotations

import redis

# Anything the store can raise: down, timed out, a key of another type, a script error.
StoreError = redis.RedisError
# Redis cannot be reached now (the caller waits, retries, or fails open).
StoreDown: tuple[type[Exception], ...] = (redis.ConnectionError, redis.TimeoutError, OSError)
# A blocking read (BLPOP, XREADGROUP) that waited past the socket timeout: no error.
StoreTimeout = redis.TimeoutError
# A key of another type or a script's refusal: someone wrote there, or a bug.
WrongType = redis.ResponseError


class Unreplicated(redis.RedisError):
    """A write that must reach a replica (``redis.min_replicas``) did not in time: the
    caller tries again, as when Redis is down."""


__all__ = ["StoreDown", "StoreError", "StoreTimeout", "Unreplicated", "WrongType"]
