"""The worker's runtime: the loop that reads entries, the pool that runs them within
``worker_concurrency`` slots, the heartbeat, taking over stopped workers' entries, and
handing its own over on SIGTERM. What a job does is the runner's and the commands' affair.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import signal
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import docker.errors
import requests.exceptions

from bot.core import health
from bot.core.config import Config
from bot.core.policy import Policy
from bot.queue.clients import SyncClient, sync_client
from bot.queue.consumer import WorkerQueue
from bot.queue.errors import StoreError, WrongType
from bot.queue.keys import HEARTBEAT_SECONDS
from bot.swarm.engine import Swarm
from bot.swarm.gitsource import GitSource
from bot.swarm.ledger import Ledger
from bot.swarm.notices import Notices, Watcher
from bot.swarm.registry import Registry
from bot.swarm.worker.dataplaces import DataPlaces
from bot.swarm.worker.identity import SwarmIdentity
from bot.swarm.worker.lifecycle import Slot, Slots, WorkerState, short
from bot.swarm.worker.runner import JobRunner
from bot.swarm.worker.sourcewatch import SourceWatcher
from bot.swarm.worker.tools import SwarmTools
from commands import REGISTRY, SCHEMAS

log = logging.getLogger("swarmbot.worker")

# Jobs waiting for another job's stack lock wait in threads of their own, outside the
# worker_concurrency slots; this many may wait at once before waiting costs a slot again.
MAX_LOCK_WAITERS = 256
# How often a running worker looks again at which swarm its daemon is in.
SWARM_CHECK_SECONDS = 15.0
DOCKER_DOWN = (docker.errors.DockerException, requests.exceptions.RequestException)
GIL_SWITCH_SECONDS = 0.0005
# Entries read ahead of the slots: enough that a read behind a row of waiting deploys is
# seen and run in a read slot; few enough that other workers still get a share.
READ_AHEAD = 64
READ_OPS = frozenset(name for name, c in REGISTRY.items() if c.read_only)


def peek_op(fields: dict[Any, Any]) -> str:
    """The operation an entry says it carries, for choosing its slot only: unverified
    (the runner checks the signature before anything runs), so a forged entry can at most
    take a read slot for the moment it takes to refuse it."""
    try:
        op = json.loads(str(fields.get("job", "")))["op"]
    except (ValueError, TypeError, KeyError):
        return ""
    return op if isinstance(op, str) else ""


class Worker:
    def __init__(
        self, config: Config, client: SyncClient, swarm: Swarm, consumer: str | None = None
    ) -> None:
        self.config = config
        work_queue = WorkerQueue(
            client,
            config.redis_prefix,
            config.signing_secret,
            consumer or socket.gethostname(),
            dead_after=config.worker_timeout_seconds,
            swarm=config.swarm,
            replicas=(config.redis_replicas, config.redis_wait_ms),
        )
        self.state = WorkerState(
            config=config,
            engine=swarm,
            queue=work_queue,
            # The worker's own record of jobs taken and changes applied, beyond Redis's reach.
            ledger=Ledger(config.worker_state_dir, config.redis_prefix),
            notices=Notices(config, work_queue),
            policy=Policy(config.roles),
            git=GitSource(config.git, config.worker_state_dir) if config.git else None,
            registry=Registry(config.registry),
        )
        self.identity = SwarmIdentity(self.state)
        self.data = DataPlaces(self.state)
        self.tools = SwarmTools(self.state, self.identity)
        self.runner = JobRunner(
            self.state,
            self.tools,
            {name: c.handler for name, c in REGISTRY.items() if c.handler is not None},
            SCHEMAS,
            {name: c.notice for name, c in REGISTRY.items() if c.notice is not None},
        )
        self._freed = threading.Event()  # a slot of either pool was given back
        self.slots = Slots(config.worker_concurrency, self._freed)
        self.reads = Slots(config.read_slots, self._freed)  # for read-only jobs only
        # Entries running here: an entry that reaches this worker twice at once (its own
        # pending list and a takeover both hold it) runs once; after it finished, the
        # ledger refuses it.
        self._entries_lock = threading.Lock()
        self._inflight: set[str] = set()
        self._reclaimed: queue.SimpleQueue[tuple[str, dict[Any, Any]]] = queue.SimpleQueue()
        self._drained = threading.Event()  # set: no job runs here any more
        self._ready = False  # taking jobs
        self._burst_checked = float("-inf")  # when burst() last looked at group and swarm
        self._threads: list[threading.Thread] = []  # long-lived: all must stay alive

    @property
    def queue(self) -> WorkerQueue:
        return self.state.queue

    def run(self, stop: threading.Event) -> None:
        self.state.stop = stop
        # /healthz from the first second: a worker waiting for Redis answers 503 with why,
        # instead of not answering at all (its healthcheck would only say "not running").
        if self.config.health_worker_port:
            health.serve(
                self.config.health_host,
                self.config.health_worker_port,
                self._health,
                self._refresh_metrics,
                role="worker",
                about=self._about,
            )
        self.state.wait_for_redis(self.queue.ensure_group)
        # Which daemon, node and swarm: a worker on another swarm than the one it serves
        # takes nothing, not even its own backlog, until that swarm is accepted.
        self.identity.wait_until_right(stop)
        if stop.is_set():
            return
        # Beat before reading anything: a worker with pending entries and no heartbeat at
        # all is taken for one that retired, and others may take its entries over.
        self.state.wait_for_redis(lambda: self.queue.beat({}, self._load()))
        # First whatever this consumer had taken but not finished before a crash. Read before
        # the heartbeat thread starts taking over stopped workers' entries: those land in
        # this same pending list, and must not come back from both places.
        backlog = self.state.wait_for_redis(
            lambda: self.queue.read(count=1000, block_ms=0, pending=True)
        )
        if backlog:
            log.info("resuming %d unfinished job(s)", len(backlog))
        maintainer = threading.Thread(target=self._maintain, name="heartbeat", daemon=True)
        maintainer.start()
        self._threads = [maintainer]
        watchers = self._start_watchers(stop)
        self._ready = True
        log.info(
            "worker %s ready (concurrency %d) on %s",
            self.queue.consumer,
            self.config.worker_concurrency,
            self.identity.where.said() if self.identity.where else "?",
        )
        threads = self.config.worker_concurrency + self.config.read_slots + MAX_LOCK_WAITERS
        with ThreadPoolExecutor(threads, thread_name_prefix="job") as pool:
            while not stop.is_set():
                if not self._reclaimed.empty():
                    queued = {entry_id for entry_id, _ in backlog}
                while not self._reclaimed.empty():
                    entry = self._reclaimed.get()
                    if entry[0] not in queued:  # one read ahead and waiting for a slot
                        backlog.append(entry)
                        queued.add(entry[0])
                if self.state.wrong_swarm.is_set():
                    stop.wait(1.0)  # the heartbeat looks again; nothing is taken meanwhile
                    continue
                self._freed.clear()  # before starting: a slot freed after this wakes the wait
                backlog = self._start(backlog, pool)
                if len(backlog) >= READ_AHEAD:
                    self._freed.wait(0.05)  # every slot busy and enough read ahead
                    continue
                new = self._read(stop, waiting=bool(backlog))
                if backlog and not new:
                    self._freed.wait(0.1)  # jobs wait for a slot: until one is given back
                backlog += new
        self._drained.set()
        maintainer.join(5)
        with contextlib.suppress(StoreError):
            self.queue.retire()  # others may take over what is left at once
            for watcher in watchers:
                watcher.resign()
        log.info("worker stopped")

    def burst(self) -> int:
        """Run every job on the queue now, one at a time, each to its answer; return how many
        once the queue is empty (arq's burst mode). No heartbeat thread and no watchers: for
        ``swarmbot worker --burst`` (a one-shot from cron or CI) and for the test bot, which
        runs the chat side and this in one process."""
        if time.monotonic() >= self._burst_checked + SWARM_CHECK_SECONDS:
            # The queue's group and the swarm, once per interval: the test bot calls this
            # in a loop while a chat waits, and each look is a Docker and a Redis call.
            self.state.wait_for_redis(self.queue.ensure_group)
            self.identity.check()
            self._burst_checked = time.monotonic()
        if self.state.wrong_swarm.is_set():
            return 0
        handled = 0
        while True:
            self.queue.beat({}, self._load())  # online while it works: "queued" says so
            self.queue.move_due(time.time())
            try:
                batch = self.queue.read(count=1, block_ms=20)
            except WrongType:  # the queue deleted or replaced since: made again
                self.state.wait_for_redis(self.queue.ensure_group)
                continue
            if not batch:
                return handled
            for entry_id, fields in batch:
                if not self.slots.try_acquire():
                    raise AssertionError("a burst runs one job at a time")
                slot = Slot(self.slots)
                try:
                    self.runner.handle(entry_id, fields, slot)
                finally:
                    slot.give_back()
                handled += 1

    def _start_watchers(self, stop: threading.Event) -> list[Watcher | SourceWatcher]:
        watchers: list[Watcher | SourceWatcher] = []
        if self.config.notice_routes:
            watchers.append(
                Watcher(
                    self.config,
                    self.state.engine.client,
                    self.queue,
                    self.state.notices,
                    stop,
                    serving=self._serving,
                )
            )
        if SourceWatcher.wanted(self.config):
            watchers.append(SourceWatcher(self.state, self.tools))
        for watcher in watchers:
            self._threads += watcher.start()
        return watchers

    def _read(self, stop: threading.Event, waiting: bool) -> list[tuple[str, dict[Any, Any]]]:
        """New entries: at once when some wait for a slot (the loop then waits for a slot,
        not for new entries), else after a long wait for some."""
        try:
            return self.queue.read(
                count=self.config.worker_concurrency + self.config.read_slots,
                block_ms=1 if waiting else 1000,
            )
        except WrongType as exc:
            # The queue deleted (no group) or replaced by another type: made again, the
            # other type set aside, and reading goes on.
            log.warning("the job queue is unreadable (%s); making it again", exc)
            with contextlib.suppress(StoreError):
                self.queue.ensure_group()
        except StoreError as exc:
            log.warning("redis unavailable (%s); retrying", exc)
        except Exception:  # what no one foresaw must not end the loop
            log.exception("reading the queue failed; retrying")
        stop.wait(1.0)
        return []

    def _start(
        self, backlog: list[tuple[str, dict[Any, Any]]], pool: ThreadPoolExecutor
    ) -> list[tuple[str, dict[Any, Any]]]:
        """Start every entry that gets a slot, in order; returns those left waiting. Any job
        takes a free ordinary slot; when none is free, a read-only job takes a read slot,
        so reads pass the deploys that wait. Only then is an entry's operation looked at:
        the common case parses nothing before the runner does. Once both pools are full the
        rest waits as it is, unparsed: a long backlog is not read again per freed slot."""
        waiting: list[tuple[str, dict[Any, Any]]] = []
        for i, (entry_id, fields) in enumerate(backlog):
            full = self.slots.busy >= self.slots.capacity
            if self.state.stop.is_set() or (full and self.reads.busy >= self.reads.capacity):
                waiting += backlog[i:]
                break
            if self.slots.try_acquire():
                slot = Slot(self.slots)
            elif peek_op(fields) in READ_OPS and self.reads.try_acquire():
                slot = Slot(self.reads)
            else:
                waiting.append((entry_id, fields))
                continue
            if not self._begin(entry_id):
                log.info("entry %s is already being handled here; not run twice", entry_id)
                slot.give_back()
                continue
            pool.submit(self._handle_guarded, entry_id, fields, slot)
        return waiting

    def _retry_own(self) -> None:
        """Entries of this worker's own pending list that it left unrun (their start had
        no replica yet, or Redis failed under it), back to the loop; not those running."""
        if not self.state.recheck_pending.is_set():
            return
        self.state.recheck_pending.clear()
        mine = self.queue.read(count=1000, block_ms=0, pending=True)
        with self._entries_lock:
            left = [entry for entry in mine if entry[0] not in self._inflight]
        for entry in left:
            log.info("trying entry %s again", entry[0])
            self._reclaimed.put(entry)

    def _health(self) -> dict[str, str]:
        """The worker is healthy when it reaches both Redis and Docker, takes jobs, and
        every thread it runs is alive (one that died anyway leaves a worker that answers
        /healthz but no longer beats, or watches: unhealthy, so it is restarted)."""
        problems = {"redis": "", "docker": ""}
        if not self._ready:
            problems["worker"] = "starting: not taking jobs yet (waiting for Redis)"
        for thread in self._threads:
            if not thread.is_alive() and not self.state.stop.is_set():
                problems[f"thread {thread.name}"] = "died (see the log)"
        problems["redis"] = self.queue.reachable()
        problems["swarm"] = self.identity.wrong
        try:
            self.state.engine.ping()
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            problems["docker"] = short(exc)
        return problems

    def _about(self) -> dict[str, Any]:
        where = self.identity.where
        return {"serves": where.as_data() if where else None}

    def _serving(self) -> str:
        """The swarm ID the watchers look at; "" while this worker serves none."""
        where = self.identity.where
        return "" if self.state.wrong_swarm.is_set() or where is None else where.swarm_id

    def _refresh_metrics(self) -> None:
        self.queue.publish_metrics()

    def _maintain(self) -> None:
        """Heartbeat, lease renewal for held stacks, and taking over dead workers' jobs; and
        every ``SWARM_CHECK_SECONDS``, which swarm the daemon is in. A worker on another
        swarm does not beat: the bot says no worker is online, and the jobs it held go to
        workers that serve the swarm."""
        next_check = time.monotonic() + SWARM_CHECK_SECONDS
        while not self._drained.is_set():
            try:
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + SWARM_CHECK_SECONDS
                    with contextlib.suppress(*DOCKER_DOWN):
                        self.identity.check()
                if self.state.wrong_swarm.is_set():
                    self._drained.wait(HEARTBEAT_SECONDS)
                    continue
                self.queue.beat(dict(self.state.held), self._load())
                if not self.state.stop.is_set():
                    self.queue.move_due(time.time())  # scheduled jobs that are due
                with contextlib.suppress(*DOCKER_DOWN):
                    self.data.maybe_look()
                if not self.state.stop.is_set():  # a stopping worker takes nothing more on
                    for entry in self.queue.reclaim():
                        log.warning("taking over entry %s from a worker that stopped", entry[0])
                        self._reclaimed.put(entry)
                    self._retry_own()
            except StoreError as exc:
                log.warning("heartbeat failed: redis unavailable (%s)", exc)
            except Exception:  # a malformed reply must not end the heartbeat
                log.exception("heartbeat failed")
            self._drained.wait(HEARTBEAT_SECONDS)

    def _load(self) -> tuple[int, int, int, int]:
        """Busy and total ordinary slots, busy and total read slots (for the heartbeat)."""
        return (self.slots.busy, self.slots.capacity, self.reads.busy, self.reads.capacity)

    def _begin(self, entry_id: str) -> bool:
        """Mark an entry as handled here; False if it runs here now. One that finished
        here and comes back (its stream deleted and the entry added again under its own
        ID) goes to the runner, whose ledger refuses it as a replay and acknowledges it:
        dropped here, it would stay pending for ever."""
        with self._entries_lock:
            if entry_id in self._inflight:
                return False
            self._inflight.add(entry_id)
            return True

    def _end(self, entry_id: str) -> None:
        with self._entries_lock:
            self._inflight.discard(entry_id)

    def _handle_guarded(self, entry_id: str, fields: dict[str, Any], slot: Slot) -> None:
        try:
            self.runner.handle(entry_id, fields, slot)
        except StoreError as exc:
            # Redis failed before the job started (taking it): it stays in this worker's
            # pending list, and is tried again once Redis answers.
            log.warning("entry %s left for later: redis unavailable (%s)", entry_id, exc)
            self.state.recheck_pending.set()
        except Exception:
            # handle() answers every job it could decode, whatever went wrong inside it; what
            # reaches here failed outside any job (Redis gone while stopping).
            log.exception("entry %s: unexpected error outside a job", entry_id)
        finally:
            slot.give_back()
            self._end(entry_id)


def run_burst(config: Config, consumer: str | None = None) -> int:
    """``swarmbot worker --burst``: run what is queued now, then stop; how many jobs ran."""
    worker = Worker(config, sync_client(config.redis_url), Swarm.from_env(), consumer)
    try:
        return worker.burst()
    finally:
        with contextlib.suppress(StoreError):
            worker.queue.retire()


def run_forever(config: Config, consumer: str | None = None) -> None:
    """Entry point of ``swarmbot worker``: stop cleanly on SIGTERM/SIGINT."""
    # Job threads mostly wait on Redis and Docker; one that gets its reply must not wait
    # the default 5 ms for a busy thread to hand over the GIL (measured: that wait, not any
    # work, bounded the worker at about 800 no-op jobs a second).
    sys.setswitchinterval(GIL_SWITCH_SECONDS)
    client = sync_client(config.redis_url)
    worker = Worker(config, client, Swarm.from_env(), consumer)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    worker.run(stop)
