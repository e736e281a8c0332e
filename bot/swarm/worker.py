"""The worker: the only process that holds the Docker socket.

It reads signed jobs from Redis and trusts none of them until proven: signature, schema,
expiry, replay, and then the requester's permissions again from its own copy of the
config (a valid signature proves the bot queued it, not that the bot's policy was right).
Jobs on the same stack run one after another; reads run beside them.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import queue
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import docker.errors
import redis
import requests.exceptions

from bot.core import health
from bot.core.config import Config
from bot.core.ids import resolve_service, stack_of
from bot.core.logs import job_context
from bot.core.policy import Policy
from bot.core.scrub import env_values, masker
from bot.core.wire import Expired, Job, Rejected, Result, decode_job, job_digest
from bot.queue import records
from bot.queue.clients import sync_client
from bot.queue.consumer import WorkerQueue
from bot.queue.keys import HEARTBEAT_SECONDS
from bot.queue.stats import queue_stats
from bot.swarm import dockercli, preflight
from bot.swarm.convergence import Assessment
from bot.swarm.engine import Outcome, Swarm
from bot.swarm.ledger import Ledger
from bot.swarm.notices import Notices, Watcher, job_notice
from bot.swarm.preflight import Problem

log = logging.getLogger("swarmbot.worker")

PROGRESS_INTERVAL = 1.0
FAILURE_LOG_LINES = 5
DEFAULT_LOG_LINES = 30
LOCK_POLL_SECONDS = 0.5
NOTIFIED_OPS = {"deploy", "deploy_all", "restart", "rollback", "undeploy"}
# Jobs waiting for another job's stack lock wait in threads of their own, outside the
# worker_concurrency slots; this many may wait at once before waiting costs a slot again.
MAX_LOCK_WAITERS = 256
FINISHED_REMEMBERED = 10_000


class Slots:
    """The worker's ``worker_concurrency`` places for jobs that work. A job holds one while
    it works and gives it back while it waits for another job's stack lock, so jobs queued
    behind one long deploy never starve reads such as ``!services``."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._sem = threading.Semaphore(capacity)
        self._lock = threading.Lock()
        self.busy = 0

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


class JobFailed(Exception):
    """An expected failure whose message is safe to show in chat."""


class JobCancelled(Exception):
    """The job was cancelled while it waited for its stack."""


class HandedOver(Exception):
    """This worker is stopping (SIGTERM: swarm is replacing it, often because the job itself
    deployed swarmbot's own stack). The job is left unacknowledged for the next worker,
    which takes it over; what it already applied is recorded, so that worker only watches
    it converge and answers. Raised where a job waits, never between a change and its
    record."""


@dataclass
class Answer:
    ok: bool
    data: dict[str, Any]
    summary: str
    state: str = field(default="")

    def __post_init__(self) -> None:
        self.state = self.state or ("succeeded" if self.ok else "failed")


class Worker:
    def __init__(
        self, config: Config, client: redis.Redis, swarm: Swarm, consumer: str | None = None
    ) -> None:
        self.config = config
        self.swarm = swarm
        self.policy = Policy(config.roles)
        self.queue = WorkerQueue(
            client,
            config.redis_prefix,
            config.signing_secret,
            consumer or socket.gethostname(),
            dead_after=config.worker_timeout_seconds,
        )
        self._cli: dockercli.DockerCli | None = None
        # The worker's own record of jobs taken and changes applied, beyond Redis's reach.
        self.ledger = Ledger(config.worker_state_dir, config.redis_prefix)
        self.slots = Slots(config.worker_concurrency)
        self._current = threading.local()  # the running job's Slot, per pool thread
        self._digest = threading.local()  # the running job's ledger key, per pool thread
        # Entries running here, and recently finished: an entry that reaches this worker
        # twice (its own pending list and a takeover both hold it) runs once.
        self._entries_lock = threading.Lock()
        self._inflight: set[str] = set()
        self._finished: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._held: dict[str, str] = {}  # stack -> job holding it in this worker
        self.notices = Notices(config, self.queue)
        self._reclaimed: queue.SimpleQueue[tuple[str, dict]] = queue.SimpleQueue()
        self._stop = threading.Event()  # set: take no new jobs, hand running ones over
        self._drained = threading.Event()  # set: no job runs here any more
        self._ops: dict[str, Callable[[Job, Callable[[dict], None]], Answer]] = {
            "ping": lambda job, progress: Answer(True, {"worker": self.queue.consumer}, "pong"),
            "services": self._services,
            "stacks": self._stacks,
            "ps": self._ps,
            "restart": self._restart,
            "deploy": self._deploy,
            "deploy_all": self._deploy_all,
            "undeploy": self._undeploy,
            "check": self._check,
            "rollback": self._rollback,
            "logs": self._logs,
            "diff": self._diff,
        }

    @property
    def cli(self) -> dockercli.DockerCli:
        if self._cli is None:
            self._cli = dockercli.DockerCli.find(
                self.config.docker_cli, self.config.docker_cli_timeout
            )
            log.info("using docker CLI %s (version %s)", self._cli.path, self._cli.version)
        return self._cli

    # -- the loop ---------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        self._stop = stop
        self._wait_for_redis(self.queue.ensure_group)
        # Beat before reading anything: a worker with pending entries and no heartbeat at
        # all is taken for one that retired, and others may take its entries over.
        self._wait_for_redis(lambda: self.queue.beat({}, (0, self.slots.capacity)))
        # First whatever this consumer had taken but not finished before a crash. Read before
        # the heartbeat thread starts taking over stopped workers' entries: those land in
        # this same pending list, and must not come back from both places.
        backlog = self._wait_for_redis(
            lambda: self.queue.read(count=1000, block_ms=0, pending=True)
        )
        if backlog:
            log.info("resuming %d unfinished job(s)", len(backlog))
        maintainer = threading.Thread(target=self._maintain, name="heartbeat", daemon=True)
        maintainer.start()
        watcher = None
        if self.config.notice_routes:
            watcher = Watcher(self.config, self.swarm.client, self.queue, self.notices, stop)
            watcher.start()
        if self.config.health_worker_port:
            health.serve(
                self.config.health_host,
                self.config.health_worker_port,
                self._health,
                self._refresh_metrics,
                role="worker",
            )
        log.info(
            "worker %s ready (concurrency %d)", self.queue.consumer, self.config.worker_concurrency
        )
        threads = self.config.worker_concurrency + MAX_LOCK_WAITERS
        with ThreadPoolExecutor(threads, thread_name_prefix="job") as pool:
            while not stop.is_set():
                while not self._reclaimed.empty():
                    backlog.append(self._reclaimed.get())
                if not backlog:
                    try:
                        backlog = self.queue.read(
                            count=self.config.worker_concurrency, block_ms=1000
                        )
                    except redis.RedisError as exc:
                        log.warning("redis unavailable (%s); retrying", exc)
                        stop.wait(1.0)
                        continue
                while backlog and not stop.is_set():
                    if not self.slots.acquire(timeout=0.5):
                        continue
                    entry_id, fields = backlog.pop(0)
                    slot = Slot(self.slots)
                    if not self._begin(entry_id):
                        log.info("entry %s is already being handled here; not run twice", entry_id)
                        slot.give_back()
                        continue
                    pool.submit(self._handle_guarded, entry_id, fields, slot)
        self._drained.set()
        maintainer.join(5)
        with contextlib.suppress(redis.RedisError):
            self.queue.retire()  # others may take over what is left at once
            if watcher is not None:
                watcher.resign()
        log.info("worker stopped")

    def _health(self) -> dict[str, str]:
        """The worker is healthy when it reaches both Redis and Docker."""
        problems = {"redis": "", "docker": ""}
        try:
            self.queue.redis.ping()
        except redis.RedisError as exc:
            problems["redis"] = str(exc)
        try:
            self.swarm.ping()
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            problems["docker"] = _short(exc)
        return problems

    def _refresh_metrics(self) -> None:
        stats = queue_stats(
            self.queue.redis, self.config.redis_prefix, self.config.worker_timeout_seconds
        )
        health.QUEUE_DEPTH.set(stats["depth"])
        health.OLDEST_JOB.set(stats["oldest"])
        health.HEARTBEAT_AGE.set(stats["heartbeat"])

    def _wait_for_redis(self, call: Callable[[], Any]) -> Any:
        while True:
            try:
                return call()
            except redis.RedisError as exc:
                health.ERRORS.labels("redis").inc()
                if self._stop.is_set():
                    raise
                log.warning("redis unavailable (%s); retrying", exc)
                self._stop.wait(1.0)

    def _maintain(self) -> None:
        """Heartbeat, lease renewal for held stacks, and taking over dead workers' jobs."""
        while not self._drained.is_set():
            try:
                self.queue.beat(dict(self._held), (self.slots.busy, self.slots.capacity))
                if not self._stop.is_set():  # a stopping worker takes nothing more on
                    for entry in self.queue.reclaim():
                        log.warning("taking over entry %s from a worker that stopped", entry[0])
                        self._reclaimed.put(entry)
            except redis.RedisError as exc:
                log.warning("heartbeat failed: redis unavailable (%s)", exc)
            self._drained.wait(HEARTBEAT_SECONDS)

    def _begin(self, entry_id: str) -> bool:
        """Mark an entry as handled here; False if it already runs or has finished here."""
        with self._entries_lock:
            if entry_id in self._inflight or entry_id in self._finished:
                return False
            self._inflight.add(entry_id)
            return True

    def _end(self, entry_id: str) -> None:
        with self._entries_lock:
            self._inflight.discard(entry_id)
            self._finished[entry_id] = None
            while len(self._finished) > FINISHED_REMEMBERED:
                self._finished.popitem(last=False)

    def _handle_guarded(self, entry_id: str, fields: dict, slot: Slot) -> None:
        self._current.slot = slot
        try:
            self.handle(entry_id, fields)
        except Exception:
            # handle() answers every job it could decode, whatever went wrong inside it; what
            # reaches here failed outside any job (Redis gone while stopping).
            log.exception("entry %s: unexpected error outside a job", entry_id)
        finally:
            self._current.slot = None
            slot.give_back()
            self._end(entry_id)

    def handle(self, entry_id: str, fields: dict) -> None:
        now = time.time()
        try:
            job = decode_job(fields, self.config.signing_secret, now, self.config.job_ttl_seconds)
        except Expired as exc:
            job = exc.job
            with job_context(job.id):
                waited = int(now - job.created)
                log.warning("job %s expired after %ds in the queue; not run", job.id, waited)
                answer = Answer(
                    False,
                    {"error": f"expired after {waited}s in the queue; nothing was run"},
                    "expired",
                    "expired",
                )
                self._finish(entry_id, job, answer)
            return
        except Rejected as exc:
            self._reject(entry_id, str(exc), fields)
            return
        with job_context(job.id):
            self._handle_job(entry_id, fields, job)

    def _handle_job(self, entry_id: str, fields: dict, job: Job) -> None:
        digest = job_digest(fields)
        # The worker's own ledger first: Redis keys can be deleted by anyone who can write
        # to Redis; the ledger cannot. Then Redis, which other workers share.
        if not self.ledger.claim(digest, job.id, entry_id, job.expires):
            self._reject(
                entry_id, f"replay of job {job.id} (already taken in another entry)", fields
            )
            return
        self._digest.value = digest
        if not self.queue.claim_first_delivery(
            job.id, entry_id, ttl=2 * self.config.job_ttl_seconds + 60
        ):
            self._reject(entry_id, f"replay of job {job.id}", fields)
            return

        log.info("%s by %s", job.text, job.requester)
        if not self.queue.start(job.id):
            by = self.queue.record(job.id).get("cancelled_by", "someone")
            answer = Answer(
                False, {"error": f"cancelled by {by} before it started"}, "cancelled", "cancelled"
            )
            self._finish(entry_id, job, answer)
            return
        waited = time.time() - job.created
        if waited > 1:  # it sat in the queue (no worker, or a busy one): say it has started
            self._progress_now(
                job, {"started": f"a worker took job {job.id} after {waited:.0f}s in the queue"}
            )
        started = time.monotonic()
        try:
            answer = self._run(job)
        except HandedOver:
            log.info("left unanswered for the next worker to take over (this one is stopping)")
            return
        self._finish(entry_id, job, answer, time.monotonic() - started)
        self._tell(job, answer)

    def _finish(self, entry_id: str, job: Job, answer: Answer, seconds: float = 0.0) -> None:
        """Publish the answer; if Redis is down, keep trying: the job ran, it must be told."""
        log.info("%s in %.1fs: %s", answer.state, seconds, answer.summary)
        health.JOBS.labels(job.op, answer.state).inc()
        health.JOB_SECONDS.labels(job.op).observe(seconds)
        result = self._result(job, answer)
        self._wait_for_redis(
            lambda: self.queue.finish(entry_id, result, answer.state, answer.summary)
        )
        records.record_sync(
            self.queue.redis,
            self.queue.keys,
            who=job.requester,
            command=job.text,
            decision=answer.state,
            job=job.id,
            outcome=answer.summary,
            seconds=f"{seconds:.1f}",
            worker=self.queue.consumer,
        )

    def _reject(self, entry_id: str, reason: str, fields: dict) -> None:
        """A queue entry that must not run: dropped, kept in the rejected stream, audited."""
        log.warning("refused queue entry %s: %s", entry_id, reason)
        self._wait_for_redis(lambda: self.queue.reject(entry_id, reason, fields))
        records.record_sync(
            self.queue.redis,
            self.queue.keys,
            decision="rejected",
            reason=reason,
            entry=entry_id,
            worker=self.queue.consumer,
        )

    def _progress_now(self, job: Job, data: dict) -> None:
        try:
            self.queue.progress(Result("progress", job.id, job.op, True, data, job.reply_to))
        except redis.RedisError as exc:
            log.warning("progress not sent: %s", exc)

    def _run(self, job: Job) -> Answer:
        decision = self.policy.may_run(job.requester, job.command)
        if not decision.allowed:
            return Answer(False, {"error": decision.reason}, "refused by the worker", "refused")
        last_sent = [0.0, ""]

        def progress(data: dict) -> None:
            if self._stop.is_set():
                raise HandedOver
            text = repr(data)
            now = time.monotonic()
            if text != last_sent[1] and now - last_sent[0] >= PROGRESS_INTERVAL:
                last_sent[:] = [now, text]
                self._progress_now(job, data)

        try:
            return self._ops[job.op](job, progress)
        except HandedOver:
            raise
        except JobFailed as exc:
            return Answer(False, {"error": str(exc)}, str(exc))
        except JobCancelled as exc:
            return Answer(False, {"error": str(exc)}, "cancelled", "cancelled")
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            health.ERRORS.labels("docker").inc()
            log.warning("docker error: %s", exc)
            return Answer(
                False,
                {"error": f"Docker is not reachable or refused: {_short(exc)}"},
                "docker error",
            )
        except dockercli.DeployError as exc:
            return Answer(False, {"error": str(exc)}, str(exc))
        except Exception as exc:
            # A bug or something nobody foresaw: the user is answered all the same, and the
            # traceback goes to the log (masked like every log line).
            log.exception("unexpected error in %s", job.op)
            health.ERRORS.labels("internal").inc()
            return Answer(
                False,
                {"error": f"internal error: {type(exc).__name__}: {_short(exc)} (see the log)"},
                "internal error",
            )

    def _result(self, job: Job, answer: Answer) -> Result:
        return Result("result", job.id, job.op, answer.ok, answer.data, job.reply_to)

    @contextlib.contextmanager
    def _stack_turn(
        self, stack: str, job: Job, progress: Callable[[dict], None]
    ) -> Iterator[None]:
        """One job per stack at a time, across all workers (a lease in Redis, renewed by the
        heartbeat, so a dead worker's stack frees itself). A waiting job says what it waits
        behind, can be cancelled, and gives up when the job's time to live runs out."""
        told = False
        slot: Slot | None = getattr(self._current, "slot", None)
        while (holder := self.queue.try_lock(stack, job.id)) is not None:
            if not told:
                told = True
                if slot is not None:
                    slot.give_back()  # waiting is not working: let other jobs run meanwhile
                record = self.queue.record(holder)
                what = (
                    f"{record.get('text', '?')} by {record.get('requester', '?')}"
                    if record
                    else "?"
                )
                log.info("waits for job %s on %s", holder, stack)
                self.queue.start(job.id, "waiting")
                progress({"waiting": f"queued behind job {holder} ({what})"})
            if self.queue.record(job.id).get("state") == "cancelled":
                raise JobCancelled(
                    f"cancelled by {self.queue.record(job.id).get('cancelled_by')} while waiting"
                )
            if time.time() > job.expires:
                raise JobFailed(f"gave up waiting for job {holder} on {stack}")
            if self._stop.is_set():
                raise HandedOver
            self._stop.wait(LOCK_POLL_SECONDS)
        self._held[stack] = job.id
        if told:
            try:
                if slot is not None:
                    slot.take(self._stop)
            except HandedOver:
                self._held.pop(stack, None)
                self._wait_for_redis(lambda: self.queue.unlock(stack, job.id))
                raise
            self.queue.start(job.id)
        try:
            yield
        finally:
            self._held.pop(stack, None)
            self._wait_for_redis(lambda: self.queue.unlock(stack, job.id))

    @contextlib.contextmanager
    def _claim(self, names: list[str], job: Job) -> Iterator[None]:
        """While a job changes these stacks or services, the notice watcher leaves them to it."""
        self.notices.claim(names, job.id, self.config.deploy_deadline_seconds + 120)
        try:
            yield
        finally:
            try:
                produced = [
                    s
                    for s in self.swarm.services(status=True)
                    if s["Spec"]["Name"] in names or stack_of(s["Spec"].get("Labels")) in names
                ]
            except (docker.errors.DockerException, requests.exceptions.RequestException):
                produced = []
            self._wait_for_redis(lambda: self.notices.release(names, produced))

    def _tell(self, job: Job, answer: Answer) -> None:
        """The job's own notice: who, what changed, the outcome, how long it took."""
        if job.op not in NOTIFIED_OPS or not self.config.notice_routes:
            return
        results = answer.data.get("stacks", []) if job.op == "deploy_all" else [answer.data]
        for data in results:
            if data.get("unchanged") or ("stack" not in data and "service" not in data):
                continue
            stack, text, lines, status = job_notice(job.text, job.requester, job.id, job.op, data)
            try:
                self.notices.post(stack, text, lines, f"job-{job.id}-{stack}", status)
            except redis.RedisError as exc:
                log.warning("notice not sent: %s", exc)

    def _apply_once(self, job: Job, step: str, apply: Callable[[], object]) -> float:
        """Run a job's side effect unless a previous attempt (a worker that died after it)
        already did; returns when it was applied, from when convergence is judged."""
        digest = getattr(self._digest, "value", "") or job.id
        # Applied if either record says so: the ledger survives an attacker clearing Redis,
        # Redis tells a worker that takes over from another (whose ledger it cannot see).
        done = self.ledger.applied(digest, step) or self.queue.applied(job.id, step)
        if done is not None:
            log.info("%s was already applied; watching it converge", step)
            return done
        at = time.time()
        apply()
        self.ledger.mark_applied(digest, step, at)
        self.queue.mark_applied(job.id, step, at)
        return at

    def _allow(self, job: Job, stack: str) -> None:
        decision = self.policy.may_touch(job.requester, job.command, stack)
        if not decision.allowed:
            raise JobFailed(decision.reason)

    def _resolve(self, job: Job) -> dict:
        """The service a job names, by the rules in ``names.resolve_service``."""
        # Only services the requester may act on are candidates: ambiguity lists and "did
        # you mean" suggestions must not name services of stacks hidden from them.
        by_name = {
            s["Spec"]["Name"]: s
            for s in self.swarm.services()
            if self.policy.may_touch(
                job.requester, job.command, stack_of(s["Spec"].get("Labels"))
            ).allowed
        }
        typed = job.args["service"]
        found = resolve_service(typed, list(by_name))
        if found.match is None:
            if found.ambiguous:
                raise JobFailed(f"`{typed}` is ambiguous: {', '.join(found.candidates)}")
            hint = f"; did you mean: {', '.join(found.candidates)}" if found.candidates else ""
            raise JobFailed(f"no service `{typed}`{hint}")
        service = by_name[found.match]
        self._allow(job, stack_of(service["Spec"].get("Labels")))
        return service

    # -- operations -------------------------------------------------------------------

    def _services(self, job: Job, progress: Callable[[dict], None]) -> Answer:
        stack = job.args.get("stack")
        if stack:
            self._allow(job, stack)
        rows = self.swarm.service_rows(stack)
        visible = [
            r for r in rows if self.policy.may_touch(job.requester, "services", r["stack"]).allowed
        ]
        unhealthy = sum(1 for r in visible if r["running"] < r["desired"])
        data = {"stack": stack, "rows": visible, "hidden": len(rows) - len(visible)}
        return Answer(True, data, f"{len(visible)} services, {unhealthy} unhealthy")

    def _stacks(self, job: Job, progress: Callable[[dict], None]) -> Answer:
        files = dockercli.stack_files(self.config.stacks_dir)
        deployed: dict[str, list[dict]] = {}
        for row in self.swarm.service_rows():
            if row["stack"]:
                deployed.setdefault(row["stack"], []).append(row)
        rows = []
        for name in sorted(set(files) | set(deployed)):
            if not self.policy.may_touch(job.requester, "stacks", name).allowed:
                continue
            services = deployed.get(name, [])
            rows.append(
                {
                    "name": name,
                    "file": name in files,
                    "services": len(services),
                    "healthy": sum(1 for s in services if s["running"] >= s["desired"]),
                }
            )
        return Answer(True, {"rows": rows}, f"{len(rows)} stacks")

    def _ps(self, job: Job, progress: Callable[[dict], None]) -> Answer:
        service = self._resolve(job)
        rows = self.swarm.task_rows(service["ID"])
        return Answer(
            True, {"service": service["Spec"]["Name"], "rows": rows}, f"{len(rows)} tasks"
        )

    def _restart(self, job: Job, progress: Callable[[dict], None]) -> Answer:
        service = self._resolve(job)
        return self._change_service(
            job, service, progress, lambda: self.swarm.force_update(service["ID"])
        )

    def _rollback(self, job: Job, progress: Callable[[dict], None]) -> Answer:
        service = self._resolve(job)
        if not service.get("PreviousSpec"):
            raise JobFailed(f"{service['Spec']['Name']} has no previous spec to roll back to")
        return self._change_service(
            job,
            service,
            progress,
            lambda: dockercli.rollback(self.cli, service["ID"]),
            rollback=True,
        )

    def _change_service(
        self,
        job: Job,
        service: dict,
        progress: Callable[[dict], None],
        apply: Callable[[], object],
        rollback: bool = False,
    ) -> Answer:
        """Apply one change to one service (once), then watch it converge."""
        name = service["Spec"]["Name"]
        stack = stack_of(service["Spec"].get("Labels"))
        with self._stack_turn(stack or name, job, progress), self._claim([name], job):
            since = self._apply_once(job, job.op, apply)
            outcomes = self.swarm.watch(
                [service["ID"]],
                since,
                time.monotonic() + self.config.deploy_deadline_seconds,
                on_progress=lambda a: progress({"stack": "", "services": _progress_rows(a)}),
                rollback=rollback,
            )
        [outcome] = self._explain(outcomes, [service["ID"]])
        ok = outcome["state"] == "converged"
        return Answer(ok, {"service": name, "outcome": outcome}, f"{name}: {outcome['state']}")

    def _explain(self, outcomes: list[Outcome], service_ids: list[str]) -> list[dict]:
        """Outcomes as dicts; a service that did not converge gets its last log lines
        (secrets scrubbed), which usually say why."""
        out = []
        for outcome, sid in zip(outcomes, service_ids, strict=False):
            data = outcome.as_dict()
            health.DEPLOYS.labels(outcome.state).inc()
            if outcome.state != "converged":
                data["logs"] = self._log_tail(sid, FAILURE_LOG_LINES)
            out.append(data)
        return out

    def _log_tail(self, service_id: str, lines: int) -> list[str]:
        try:
            mask = masker().with_values(env_values(self.swarm.service_env(service_id)))
            return [mask.text(line)[:300] for line in self.swarm.logs(service_id, lines)]
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            return [f"(logs unavailable: {_short(exc)})"]

    def _logs(self, job: Job, progress: Callable[[dict], None]) -> Answer:
        service = self._resolve(job)
        lines = int(job.args.get("lines") or DEFAULT_LOG_LINES)
        text = self._log_tail(service["ID"], lines)
        name = service["Spec"]["Name"]
        return Answer(
            True, {"service": name, "lines": text, "asked": lines}, f"{name}: {len(text)} lines"
        )

    def _deploy(self, job: Job, progress: Callable[[dict], None]) -> Answer:
        stack = job.args["stack"]
        self._allow(job, stack)
        result = self._deploy_stack(stack, job, progress, force=job.args.get("force") == "yes")
        return Answer(result["ok"], result, _deploy_summary(result))

    def _undeploy(self, job: Job, progress: Callable[[dict], None]) -> Answer:
        stack = job.args["stack"]
        self._allow(job, stack)
        with self._stack_turn(stack, job, progress), self._claim([stack], job):
            services = sorted(s["Spec"]["Name"] for s in self.swarm.services(stack))
            if not services and self.queue.applied(job.id, f"undeploy:{stack}") is None:
                raise JobFailed(f"stack `{stack}` is not deployed")
            volumes = self.swarm.stack_volumes(stack)
            self._apply_once(job, f"undeploy:{stack}", lambda: dockercli.remove(self.cli, stack))
            deadline = time.monotonic() + self.config.deploy_deadline_seconds
            while self.swarm.services(stack):
                if time.monotonic() > deadline:
                    raise JobFailed(f"services of {stack} still there after the deadline")
                self._stop.wait(LOCK_POLL_SECONDS)
        data = {"stack": stack, "services": services, "volumes": volumes}
        return Answer(
            True, data, f"{stack}: removed {len(services)} services, kept {len(volumes)} volumes"
        )

    def _deploy_all(self, job: Job, progress: Callable[[dict], None]) -> Answer:
        files = dockercli.stack_files(self.config.stacks_dir)
        try:
            order = preflight.deploy_order(files, self.config.deploy_first)
        except preflight.OrderError as exc:
            raise JobFailed(str(exc)) from None
        for stack in order:
            self._allow(job, stack)  # all or nothing: refuse before deploying any
        done: list[dict] = []
        for stack in order:
            result = self._deploy_stack(
                stack, job, lambda d: progress({**d, "done": [r["stack"] for r in done]})
            )
            done.append(result)
            if not result["ok"]:
                break
        ok = all(r["ok"] for r in done) and len(done) == len(order)
        skipped = order[len(done) :]
        data = {"stacks": done, "skipped": skipped, "ok": ok}
        return Answer(
            ok, data, f"{len(done)}/{len(order)} stacks deployed" + ("" if ok else ", stopped")
        )

    def _stack_file(self, stack: str) -> Path:
        files = dockercli.stack_files(self.config.stacks_dir)
        if stack not in files:
            known = ", ".join(files) or "none"
            raise JobFailed(f"no stack file `{stack}` in the stacks directory (known: {known})")
        return files[stack]

    def _preflight(self, stack: str, file: Path) -> tuple[dict | None, list[Problem], str]:
        """Render and check a stack file: (rendered or None, problems, note)."""
        try:
            rendered = dockercli.render(self.cli, file, self.config.variables)
        except dockercli.NoRender as exc:
            return None, [], f"no pre-flight check: {exc}"
        except dockercli.DeployError as exc:
            return None, [Problem("", "file", str(exc), True)], ""
        main, *override = dockercli.compose_files(file)
        problems = [
            p
            for extra in override
            for p in preflight.unset_variables(
                extra.read_text(encoding="utf-8"), self.config.variables
            )
        ]
        problems += preflight.check(
            stack,
            main.read_text(encoding="utf-8"),
            rendered,
            file.parent,
            self.config.variables,
            self.swarm.snapshot(),
        )
        return rendered, problems, ""

    def _check(self, job: Job, progress: Callable[[dict], None]) -> Answer:
        stack = job.args["stack"]
        self._allow(job, stack)
        _rendered, problems, note = self._preflight(stack, self._stack_file(stack))
        errors = sum(p.error for p in problems)
        data = {"stack": stack, "problems": [asdict(p) for p in problems], "note": note}
        return Answer(
            errors == 0, data, f"{stack}: {errors} errors, {len(problems) - errors} warnings"
        )

    def _diff(self, job: Job, progress: Callable[[dict], None]) -> Answer:
        stack = job.args["stack"]
        self._allow(job, stack)
        rendered, problems, note = self._preflight(stack, self._stack_file(stack))
        if rendered is None:
            raise JobFailed(note or "; ".join(p.message for p in problems))
        changes = preflight.diff(stack, rendered, self.swarm.services(stack))
        data = {"stack": stack, "changes": changes}
        return Answer(True, data, f"{stack}: {len(changes)} services would change")

    def _deploy_stack(
        self, stack: str, job: Job, progress: Callable[[dict], None], force: bool = False
    ) -> dict:
        file = self._stack_file(stack)
        base = {
            "stack": stack,
            "ok": False,
            "error": "",
            "outcomes": [],
            "problems": [],
            "note": "",
        }
        with self._stack_turn(stack, job, progress), self._claim([stack], job):
            started = time.monotonic()
            rendered, problems, note = self._preflight(stack, file)
            base.update(problems=[asdict(p) for p in problems], note=note, cli=self.cli.version)
            if any(p.error for p in problems):
                return {
                    **base,
                    "error": "the pre-flight check found problems; nothing was deployed",
                }
            override = preflight.hash_override(stack, rendered) if rendered is not None else None
            if rendered is not None:
                current = self.swarm.services(stack)
                base["changes"] = preflight.diff(stack, rendered, current)
                first_try = self.queue.applied(job.id, f"deploy:{stack}") is None
                if current and not base["changes"] and not force and first_try:
                    return {**base, "ok": True, "unchanged": True}
            try:
                since = self._apply_once(
                    job,
                    f"deploy:{stack}",
                    lambda: dockercli.deploy(
                        self.cli,
                        stack,
                        file,
                        self.config.variables,
                        self.config.resolve_image,
                        override,
                    ),
                )
            except dockercli.DeployError as exc:
                return {**base, "error": masker().text(str(exc))}
            ids = [s["ID"] for s in self.swarm.services(stack)]
            outcomes: list[Outcome] = self.swarm.watch(
                ids,
                since,
                started + self.config.deploy_deadline_seconds,
                on_progress=lambda a: progress({"stack": stack, "services": _progress_rows(a)}),
            )
        return {
            **base,
            "ok": all(o.state == "converged" for o in outcomes),
            "outcomes": self._explain(outcomes, ids),
            # Since the change was applied, even if an earlier worker applied it (a job
            # taken over after `!deploy swarmbot` replaced its worker).
            "seconds": round(max(time.monotonic() - started, time.time() - since), 1),
        }


def _progress_rows(assessments: list[Assessment]) -> list[dict]:
    return [
        {"name": a.name, "running": a.running, "desired": a.desired, "state": a.state}
        for a in assessments
    ]


def _deploy_summary(result: dict) -> str:
    if result.get("unchanged"):
        return f"{result['stack']}: unchanged, not deployed"
    if result["error"]:
        return f"{result['stack']}: {result['error'].splitlines()[-1]}"
    bad = [o for o in result["outcomes"] if o["state"] != "converged"]
    return f"{result['stack']}: " + (
        "converged" if not bad else f"{len(bad)} service(s) not converged"
    )


def _short(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]


def run_forever(config: Config, consumer: str | None = None) -> None:
    """Entry point of ``swarmbot worker``: stop cleanly on SIGTERM/SIGINT."""
    client = sync_client(config.redis_url)
    worker = Worker(config, client, Swarm.from_env(), consumer)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    worker.run(stop)
