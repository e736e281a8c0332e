"""Results coming back from the worker, turned into replies by the command that asked.

Each bot process reads its own inbox stream through a consumer group and acknowledges a
result only after the adapter has delivered it, so a bot that dies in between delivers it
when it comes back instead of losing it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import cast

import redis

from bot.core.logs import job_context
from bot.core.replies import Reply, masked
from bot.core.wire import NoticeData, Result
from bot.queue.inbox import Inbox
from commands import REGISTRY
from commands.base import Command

log = logging.getLogger("swarmbot.results")

MAX_ATTEMPTS = 20
Deliver = Callable[[Result, Reply], Awaitable[None]]


def to_reply(result: Result, registry: dict[str, Command] = REGISTRY) -> Reply:
    if result.kind == "notice":
        data = cast(NoticeData, result.data)
        return Reply(
            str(data.get("text", "")),
            detail=tuple(str(d) for d in data.get("detail", [])),
            status="failed" if data.get("status") == "failed" else "info",
        )
    command = registry[result.op]
    if result.kind == "progress":
        # Queue events (waiting behind another job, taken by a worker) read the same for all.
        note = result.data.get("waiting") or result.data.get("started")
        if note:
            text = str(note)
        else:
            text = command.render_progress(result.data) if command.render_progress else "working…"
        return Reply(text, status="progress", job=result.job)
    assert command.render is not None
    return command.render(result)


async def route(inbox: Inbox, consumer: str, deliver: Deliver, stop: asyncio.Event) -> None:
    """Deliver every result in ``inbox`` until ``stop`` is set; survive Redis outages.

    A result is acknowledged only once delivered. A failed delivery is retried from this
    consumer's pending entries (in order, so a progress edit never overtakes its result),
    and given up after ``MAX_ATTEMPTS`` so one undeliverable result cannot block the rest.
    """
    pending = True  # first what this consumer received but never acknowledged
    ready = False
    attempts: dict[str, int] = {}
    while not stop.is_set():
        try:
            if not ready:
                await inbox.ensure()
                ready = True
            batch = await inbox.read(consumer, block_ms=500, pending=pending)
            if pending and not batch:
                pending = False
                continue
            for entry_id, result in batch:
                try:
                    with job_context(result.job):
                        await deliver(result, masked(to_reply(result)))
                except Exception as exc:
                    attempts[entry_id] = attempts.get(entry_id, 0) + 1
                    if attempts[entry_id] < MAX_ATTEMPTS:
                        log.warning("delivering job %s failed (%s); will retry", result.job, exc)
                        pending = True
                        await asyncio.sleep(min(attempts[entry_id], 10))
                        break
                    log.error(
                        "job %s: giving up delivery after %d tries: %s",
                        result.job,
                        MAX_ATTEMPTS,
                        exc,
                    )
                attempts.pop(entry_id, None)
                await inbox.ack(entry_id)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("redis unavailable (%s); retrying", exc)
            await asyncio.sleep(1.0)
