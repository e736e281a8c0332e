"""Writes that a replica has before they count: Redis's WAIT, on the writer's connection.

Redis replicates asynchronously: a master that dies a moment after a write may take it
with it, and Sentinel promotes a replica without it. For the writes whose loss would break
a promise (a job the user was told is queued; a job's start, before anything is changed;
its answer), swarmbot asks Redis to WAIT until ``replicas`` replicas acknowledge them.
WAIT counts the writes of the connection it is sent on, so it follows them on the same
connection: after a transaction (``Transaction``), or in the same pipeline.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
import redis.asyncio as aioredis

log = logging.getLogger("swarmbot.queue")
WAIT_MS = 1000  # how long a write waits for its replicas before it is said to be unreplicated


class Transaction(aioredis.client.Pipeline):
    """A MULTI/EXEC pipeline that, when ``replicas`` > 0, sends WAIT on its connection
    after EXEC and before the connection goes back to the pool; ``acked`` is then how many
    replicas have its writes (-1: WAIT failed, the writes' fate unknown)."""

    def __init__(self, client: aioredis.Redis, replicas: int, wait_ms: int = WAIT_MS) -> None:
        super().__init__(client.connection_pool, client.response_callbacks, True, None)
        self.replicas = replicas
        self.wait_ms = wait_ms
        self.acked = -1
        self._executed = False

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        self._executed = bool(self.command_stack)
        return await super().execute(raise_on_error)

    async def reset(self) -> None:  # type: ignore[override]
        # Called by execute() with the connection still held: the one moment WAIT counts
        # this transaction's writes.
        # A transaction that failed left its connection closed: nothing to wait for.
        held = self.connection
        if self._executed and self.replicas > 0 and held is not None and held.is_connected:
            self._executed = False
            try:
                await held.send_command("WAIT", self.replicas, self.wait_ms)
                self.acked = int(await held.read_response())
            except (redis.RedisError, OSError, ValueError) as exc:
                log.warning("WAIT for %d replica(s) failed: %s", self.replicas, exc)
                self.acked = -1
                await held.disconnect()
        await super().reset()  # type: ignore[no-untyped-call]

    @property
    def replicated(self) -> bool:
        return self.replicas <= 0 or self.acked >= self.replicas


def wait_after(pipe: redis.client.Pipeline, replicas: int, wait_ms: int = WAIT_MS) -> bool:
    """Queue WAIT at the end of a non-transactional pipeline (its commands share one
    connection); True if one was queued (its reply is the pipeline's last)."""
    if replicas <= 0:
        return False
    pipe.execute_command("WAIT", replicas, wait_ms)  # type: ignore[no-untyped-call]
    return True
