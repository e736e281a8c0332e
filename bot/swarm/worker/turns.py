"""The guarantees every change shares (``bot.core.operations.Turns``): one job per stack at
a time across all workers, claims that keep the notice watcher off a job's work, a side
effect applied once even across a worker crash, and waiting within the deadline.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import docker.errors
import requests.exceptions

from bot.core.ids import stack_of
from bot.core.locks import blocking, refusal
from bot.core.operations import JobCancelled, JobFailed, JobRefused, JobRun, who
from bot.core.schedule import WINDOW_ARG, window_refusal
from bot.queue.errors import StoreError
from bot.swarm.worker.lifecycle import HandedOver, WorkerState

log = logging.getLogger("swarmbot.worker")

LOCK_POLL_SECONDS = 0.5


class SwarmTurns:
    def __init__(self, state: WorkerState) -> None:
        self.state = state
        self.queue = state.queue

    @contextlib.contextmanager
    def stack_turn(self, stack: str, run: JobRun) -> Iterator[None]:
        """A lease in Redis, renewed by the heartbeat, so a dead worker's stack frees
        itself. A waiting job says what it waits behind, gives its slot back (waiting is not
        working: other jobs run meanwhile), can be cancelled, and gives up when its time to
        live runs out."""
        job, told = run.job, False
        while (holder := self.queue.try_lock(stack, job.id)) is not None:
            if not told:
                told = True
                if run.slot is not None:
                    run.slot.give_back()
                record = self.queue.record(holder)
                what = (
                    f"{record.get('text', '?')} by {record.get('requester', '?')}"
                    if record
                    else "?"
                )
                log.info("waits for job %s on %s", holder, stack)
                self.queue.start(job.id, "waiting")
                run.progress({"waiting": f"queued behind job {holder} ({what})"})
            if self.queue.record(job.id).get("state") == "cancelled":
                by = self.queue.record(job.id).get("cancelled_by")
                raise JobCancelled(f"cancelled by {by} while waiting")
            if time.time() > job.expires:
                raise JobFailed(f"gave up waiting for job {holder} on {stack}")
            if self.state.stop.is_set():
                raise HandedOver
            self.state.stop.wait(LOCK_POLL_SECONDS)
        self.state.held[stack] = job.id
        try:
            self._may_change(stack, run)
        except JobRefused:
            self.state.held.pop(stack, None)
            self.state.wait_for_redis(lambda: self.queue.unlock(stack, job.id))
            raise
        if told:
            try:
                if run.slot is not None:
                    run.slot.take(self.state.stop)
            except HandedOver:
                self.state.held.pop(stack, None)
                self.state.wait_for_redis(lambda: self.queue.unlock(stack, job.id))
                raise
            self.queue.start(job.id)
        try:
            yield
        finally:
            self.state.held.pop(stack, None)
            self.state.wait_for_redis(lambda: self.queue.unlock(stack, job.id))

    def _may_change(self, stack: str, run: JobRun) -> None:
        """Refuse the change when someone else holds a lock on the stack (or on all), or
        the stack's deploy windows are closed (unless it was made ``--now``): checked once
        the job has the stack's turn, so a job queued before, or waiting behind another,
        is refused too."""
        config = self.state.config
        if run.args.get(WINDOW_ARG) != "now":
            closed = window_refusal(config.windows, config.timezone, stack, time.time())
            if closed:
                raise JobRefused(closed)
        locks = self.state.wait_for_redis(
            lambda: self.queue.lock_store(config.signing_secret).all()
        )
        lock = blocking(locks, stack, run.job.requester)
        if lock is not None:
            raise JobRefused(refusal(lock, stack, config.prefix))

    @contextlib.contextmanager
    def claim(self, names: list[str], run: JobRun) -> Iterator[None]:
        notices = self.state.notices
        notices.claim(names, run.job.id, self.state.config.deploy_deadline_seconds + 120)
        before = self._claimed_services(names)
        self._tell_started(names, before or [], run)
        try:
            yield
        finally:
            after = self._claimed_services(names)
            removed: set[str] = set()
            if before is not None and after is not None:
                removed = {s["ID"] for s in before} - {s["ID"] for s in after}
            self.state.wait_for_redis(lambda: notices.release(names, after or [], removed))

    def _tell_started(self, names: list[str], services: list[dict[str, Any]], run: JobRun) -> None:
        """A change is told when it starts, in one message per stack that its end edits
        to the outcome (``Runner._tell``): people see a deploy in progress."""
        config, job = self.state.config, run.job
        if not config.notice_routes:
            return
        have = {s["Spec"]["Name"] for s in services}
        stacks = {stack_of(s["Spec"].get("Labels")) for s in services} - {""}
        stacks |= {n for n in names if n not in have and "_" not in n}
        started = self.state.started.setdefault(job.id, set())
        for stack in sorted(stacks - started):
            text = f"{stack}: {job.text} {who(job)}: started…"
            try:
                self.state.notices.post(
                    stack,
                    text,
                    [],
                    f"job-{job.id}-{stack}-start",
                    "info",
                    story=f"job-{job.id}-{stack}",
                )
            except StoreError as exc:  # the end is told all the same
                log.warning("start notice not sent: %s", exc)
            started.add(stack)

    def _claimed_services(self, names: list[str]) -> list[dict[str, Any]] | None:
        """The services named, or in the stacks named; None if Docker does not answer."""
        try:
            return [
                s
                for s in self.state.engine.services(status=True)
                if s["Spec"]["Name"] in names or stack_of(s["Spec"].get("Labels")) in names
            ]
        except (docker.errors.DockerException, requests.exceptions.RequestException):
            return None

    def apply_once(self, run: JobRun, step: str, apply: Callable[[], object]) -> float:
        # Applied if either record says so: the ledger survives an attacker clearing Redis,
        # Redis tells a worker that takes over from another (whose ledger it cannot see).
        job, ledger = run.job, self.state.ledger
        digest = run.digest or job.id
        done = ledger.applied(digest, step) or self.queue.applied(job.id, step)
        if done is not None:
            log.info("%s was already applied; watching it converge", step)
            return done
        at = time.time()
        apply()
        ledger.mark_applied(digest, step, at)
        self.queue.mark_applied(job.id, step, at)
        return at

    def first_try(self, run: JobRun, step: str) -> bool:
        """No attempt at this job applied ``step`` yet (a deploy that is a no-op the first
        time is still watched when a worker that died after applying it is replaced)."""
        return self.queue.applied(run.job.id, step) is None

    def wait_until(self, done: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + self.state.config.deploy_deadline_seconds
        while not done():
            if time.monotonic() > deadline:
                raise JobFailed(f"{what} after the deadline")
            if self.state.stop.is_set():
                raise HandedOver
            self.state.stop.wait(LOCK_POLL_SECONDS)
