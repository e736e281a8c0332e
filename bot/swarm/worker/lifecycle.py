"""The worker's moving parts shared by its runtime, runner and tools: the state one worker
process holds, its job slots, and the hand-over signal."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from bot.core import health
from bot.core.config import Config
from bot.core.config.defaults import registry_defaults
from bot.core.policy import Policy
from bot.queue.consumer import WorkerQueue
from bot.queue.errors import StoreError
from bot.swarm.engine import Swarm
from bot.swarm.gitsource import GitSource
from bot.swarm.ledger import Ledger
from bot.swarm.notices import Notices
from bot.swarm.registry import Registry

log = logging.getLogger("swarmbot.worker")
T = TypeVar("T")


class HandedOver(Exception):
    """This worker is stopping (SIGTERM: swarm is replacing it, often because the job itself
    deployed swarmbot's own stack). The job is left unacknowledged for the next worker,
    which takes it over; what it already applied is recorded, so that worker only watches
    it converge and answers. Raised where a job waits, never between a change and its
    record."""


class Slots:
    """The worker's ``worker_concurrency`` places for jobs that work. A job holds one while
    it works and gives it back while it waits for another job's stack lock, so jobs queued
    behind one long deploy never starve reads such as ``!services``."""

    def __init__(self, capacity: int, freed: threading.Event | None = None) -> None:
        self.capacity = capacity
        self._sem = threading.Semaphore(capacity)
        self._lock = threading.Lock()
        self.busy = 0
        # Set on every release: the worker's loop waits on it for a place for the next job
        # instead of polling (a 50 ms poll held a queue of quick jobs to ~100 jobs/s).
        self.freed = freed or threading.Event()

    def try_acquire(self) -> bool:
        return self.acquire(timeout=0)

    def acquire(self, timeout: float) -> bool:
        if not self._sem.acquire(timeout=timeout):
            return False
        with self._lock:
            self.busy += 1
        return True

    def release(self) -> None:
        with self._lock:
            self.busy -= 1
        self._sem.release()
        self.freed.set()


class Slot:
    """One job's hold on a place in ``Slots``."""

    def __init__(self, slots: Slots) -> None:
        self._slots = slots
        self.held = True  # taken by the loop before the job was handed to a thread

    def give_back(self) -> None:
        if self.held:
            self.held = False
            self._slots.release()

    def take(self, stop: threading.Event) -> None:
        while not self.held:
            if self._slots.acquire(timeout=0.5):
                self.held = True
            elif stop.is_set():
                raise HandedOver


@dataclass
class WorkerState:
    """What one worker process holds, shared by its runtime, runner and tools."""

    config: Config
    engine: Swarm
    queue: WorkerQueue
    ledger: Ledger
    notices: Notices
    policy: Policy
    git: GitSource | None = None  # stacks from a git repository, if configured
    registry: Registry = field(default_factory=lambda: Registry(registry_defaults()))
    stop: threading.Event = field(default_factory=threading.Event)  # set: hand over
    held: dict[str, str] = field(default_factory=dict)  # stack -> job holding it here
    # job -> stacks whose notices rooms were told it started (edited to its outcome at end)
    started: dict[str, set[str]] = field(default_factory=dict)
    # Set while the daemon is in another swarm than the one served: no jobs, no notices.
    wrong_swarm: threading.Event = field(default_factory=threading.Event)
    # Set when an entry was left in this worker's pending list unrun (no replica had its
    # start, or Redis failed under it): the heartbeat reads that list again and retries.
    recheck_pending: threading.Event = field(default_factory=threading.Event)

    def wait_for_redis(self, call: Callable[[], T]) -> T:
        """``call()``, retried while Redis is unreachable (unless stopping)."""
        while True:
            try:
                return call()
            except StoreError as exc:
                health.ERRORS.labels("redis").inc()
                if self.stop.is_set():
                    raise
                log.warning("redis unavailable (%s); retrying", exc)
                self.stop.wait(1.0)


def short(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]
