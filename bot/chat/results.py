"""Results coming back from the worker, turned into replies by the command that asked.

Each bot process reads its own inbox stream through a consumer group and acknowledges a
result only after the adapter has delivered it, so a bot that dies in between delivers it
when it comes back instead of losing it.

Deliveries never wait on each other across rooms: each room (or channel) has its own lane,
a task that posts that room's results in order (so a progress edit never overtakes its
result). A message that cannot be posted is retried in its own lane for a bounded time, or
dropped at once when the platform says it never will be accepted (the bot may not post in
that room); either way the other rooms' answers go out at their normal speed. Each failure
is logged once with its job and room, counted in /metrics, shown by /healthz as degraded,
and told in the command's own room when the failed message was the notice of a command.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import cast

from bot.chat.conversation import Undeliverable
from bot.core.health import DELIVERY_FAILURES
from bot.core.logs import Once, job_context
from bot.core.replies import Reply, masked
from bot.core.wire import SWARM, NoticeData, Result
from bot.queue.errors import StoreDown, WrongType
from bot.queue.inbox import Inbox
from commands import REGISTRY
from commands.base import Command

log = logging.getLogger("swarmbot.results")

DONE_REMEMBERED = 10_000
RETRY_SECONDS = 60.0  # how long one message that failed to post is retried, in its lane
Deliver = Callable[[Result, Reply], Awaitable[None]]
Tell = Callable[[dict[str, str], Reply, str], Awaitable[None]]


def destination(ref: dict[str, str]) -> str:
    """The room or channel a result goes to: the unit whose order matters."""
    return ref.get("room") or ref.get("channel") or "-"


def describe(result: Result) -> str:
    """How the log names a message: its job, or the notice when no job made it."""
    if result.kind == "notice" and result.job == "0":
        return f"notice {result.data.get('id', '')}"
    return f"job {result.job}" + (" (its notice)" if result.kind == "notice" else "")


class Deliveries:
    """Where posting fails now, for /healthz (degraded, not down: restarting the bot
    cannot make a room accept it) until a post to that room works again."""

    def __init__(self) -> None:
        self.failing: dict[str, str] = {}

    def failed(self, where: str, problem: str) -> None:
        self.failing[where] = problem

    def delivered(self, where: str) -> None:
        self.failing.pop(where, None)

    def problems(self) -> dict[str, str]:
        return {f"post {w}": f"cannot post to {w}: {p}" for w, p in sorted(self.failing.items())}


def to_reply(result: Result, registry: dict[str, Command] = REGISTRY) -> Reply:
    """The reply a result reads as; a job's on one of several swarms begins "[prod] "
    (notices name their swarm themselves: the worker wrote them)."""
    reply = _reply(result, registry)
    swarm = result.reply_to.get("swarm", "") if result.kind != "notice" else ""
    if swarm and SWARM.match(swarm):
        return dataclasses.replace(reply, text=f"[{swarm}] {reply.text}")
    return reply


def _reply(result: Result, registry: dict[str, Command]) -> Reply:
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


class Router:
    """Reads one adapter's inbox and hands each result to the lane of its room."""

    def __init__(
        self,
        inbox: Inbox,
        consumer: str,
        deliver: Deliver,
        *,
        deliveries: Deliveries | None = None,
        tell: Tell | None = None,
        retry_seconds: float = RETRY_SECONDS,
    ) -> None:
        self.inbox = inbox
        self.consumer = consumer
        self.deliver = deliver
        self.deliveries = deliveries or Deliveries()
        self.tell = tell
        self.retry_seconds = retry_seconds
        self._trouble = Once(log)
        self._lanes: dict[str, asyncio.Queue[tuple[str, Result]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._held: set[str] = set()  # entries in a lane, not yet acknowledged
        # Entries acknowledged lately: a read of the pending list that was answered before
        # an acknowledgement landed still lists them, and must not deliver them again.
        self._done: collections.OrderedDict[str, None] = collections.OrderedDict()

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver every result in the inbox until ``stop`` is set; survive Redis outages.
        Entries still in a lane at the stop stay pending in Redis and are delivered by the
        next start."""
        pending = True  # first what this consumer received but never acknowledged
        after = "0"
        ready = False
        try:
            while not stop.is_set():
                try:
                    if not ready:
                        await self.inbox.ensure()
                        ready = True
                    batch = await self.inbox.read(
                        self.consumer, block_ms=500, pending=pending, after=after
                    )
                    self._trouble.clear()  # readable again: a later problem is told anew
                    if pending:
                        if not batch:
                            pending = False
                            continue
                        after = batch[-1][0]
                    for entry_id, result in batch:
                        if entry_id not in self._held and entry_id not in self._done:
                            self._held.add(entry_id)
                            self._lane(destination(result.reply_to)).put_nowait((entry_id, result))
                except StoreDown as exc:
                    log.warning("redis unavailable (%s); retrying", exc)
                    ready = False
                    pending, after = True, "0"  # entries read but lost with the connection
                    await asyncio.sleep(1.0)
                except Exception as exc:
                    # The inbox key of another type, a reply of a shape nobody foresaw:
                    # logged, and tried again, never the end of the bot (which would come
                    # back to the same key and die again).
                    self._trouble.warning(
                        "inbox %s unreadable (%s); retrying", self.inbox.name, exc
                    )
                    ready = False
                    pending, after = True, "0"
                    await asyncio.sleep(1.0)
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _lane(self, where: str) -> asyncio.Queue[tuple[str, Result]]:
        lane = self._lanes.get(where)
        if lane is None:
            lane = self._lanes[where] = asyncio.Queue()
            task = asyncio.create_task(self._drain(where, lane), name=f"lane {where}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return lane

    async def _drain(self, where: str, lane: asyncio.Queue[tuple[str, Result]]) -> None:
        """Post a room's results in order. Nothing but a cancel ends it while results
        wait: a lane that died would leave every later answer for its room queued to
        nobody."""
        while True:
            entry_id, result = await lane.get()
            try:
                await self._post(where, result)
                await self._ack(entry_id)
            except Exception:
                log.exception("%s: delivering to %s failed; the next goes on", entry_id, where)
                self._held.discard(entry_id)
            if lane.empty():  # no await since the check: the reader opens a new lane
                del self._lanes[where]
                return

    async def _ack(self, entry_id: str) -> None:
        """Acknowledge, riding out a Redis outage: an entry left unacknowledged would be
        delivered twice by the next start."""
        while True:
            try:
                await self.inbox.ack(entry_id)
                break
            except StoreDown:
                await asyncio.sleep(1.0)
            except WrongType as exc:
                # The inbox was deleted or replaced meanwhile (its group went with it):
                # nothing is left to acknowledge. Raising here used to end the room's
                # lane, and every later answer for that room was queued to nobody.
                log.warning("entry %s could not be acknowledged (%s); left", entry_id, exc)
                break
        self._held.discard(entry_id)
        self._done[entry_id] = None
        while len(self._done) > DONE_REMEMBERED:
            self._done.popitem(last=False)

    async def _post(self, where: str, result: Result) -> None:
        """Post one result, retrying on its own; gives up after ``retry_seconds`` or at
        once when the platform refuses it for good. Logged once per failed message."""
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.5
        failed_since = 0.0
        while True:
            try:
                with job_context(result.job):
                    await self.deliver(result, masked(to_reply(result)))
                self.deliveries.delivered(where)
                if failed_since:
                    log.info(
                        "%s: posted to %s after %.0f s",
                        describe(result),
                        where,
                        time.monotonic() - failed_since,
                    )
                return
            except Exception as exc:  # any platform error: this lane only
                problem = str(exc) or type(exc).__name__
                final = isinstance(exc, Undeliverable) or time.monotonic() + delay > deadline
                if not failed_since:
                    failed_since = time.monotonic()
                    DELIVERY_FAILURES.labels(self.inbox.name).inc()
                    self.deliveries.failed(where, problem)
                    then = (
                        "dropped: the platform will not accept it"
                        if isinstance(exc, Undeliverable)
                        else f"retrying it on its own for up to {self.retry_seconds:.0f} s"
                    )
                    log.warning(
                        "%s: cannot post to %s (%s); %s", describe(result), where, problem, then
                    )
                if final:
                    await self._tell_origin(result, where, problem)
                    return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _tell_origin(self, result: Result, where: str, problem: str) -> None:
        """A command's notice that could not be posted is told in the command's thread."""
        origin = result.data.get("origin") if result.kind == "notice" else None
        if self.tell is None or not isinstance(origin, dict):
            return
        text = f"the notice of this job could not be posted to {where}: {problem}"
        try:
            await self.tell(origin, Reply(text, status="failed"), f"undelivered-{result.job}")
        except Exception as exc:
            log.warning("%s: could not tell its room either: %s", describe(result), exc)
