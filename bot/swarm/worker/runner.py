"""The job runner: one queue entry from Redis to its answer.

It trusts nothing it reads: signature, schema, expiry, replay (the worker's own ledger,
then Redis), cancellation, and the requester's permission again from its own copy of the
config (a valid signature proves the bot queued it, not that the bot's policy was right).
Then the command's handler runs, and every job ends in an answer: a refusal, the
handler's answer, or "internal error" for whatever nobody foresaw.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import docker.errors
import requests.exceptions

from bot.core import health
from bot.core.alerting.ties import LastChange
from bot.core.audit import entry
from bot.core.config import Config
from bot.core.logs import job_context
from bot.core.operations import (
    Answer,
    Handler,
    JobCancelled,
    JobFailed,
    JobRefused,
    JobRun,
    Notice,
    NoticeFor,
    SlotHandle,
    commit_words,
    who,
)
from bot.core.wire import Expired, Job, Rejected, Result, Schemas, decode_job, job_digest
from bot.queue.errors import StoreError
from bot.swarm import dockercli
from bot.swarm.worker.lifecycle import HandedOver, WorkerState, short
from bot.swarm.worker.tools import SwarmTools

log = logging.getLogger("swarmbot.worker")

PROGRESS_INTERVAL = 1.0
# The ledger's step that says a job's answer was posted: a job answered once is never
# answered again, even when its entry comes back under the very same entry ID (a stream
# deleted and the captured entry added back), which the entry check alone lets through.
ANSWERED = "answered"


class JobRunner:
    def __init__(
        self,
        state: WorkerState,
        tools: SwarmTools,
        handlers: dict[str, Handler],
        schemas: Schemas,
        notices: dict[str, NoticeFor],
    ) -> None:
        self.state = state
        self.config = state.config
        self.queue = state.queue
        self.ledger = state.ledger
        self.policy = state.policy
        self.tools = tools
        self.handlers = handlers
        self.schemas = schemas
        self.notice_for = notices

    def handle(
        self, entry_id: str, fields: dict[Any, Any], slot: SlotHandle | None = None
    ) -> None:
        """Handle one queue entry (in ``slot``); every job it can decode is answered."""
        now = time.time()
        try:
            job = decode_job(
                fields, self.config.signing_secret, now, self.config.job_ttl_seconds, self.schemas
            )
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
        if job.swarm != self.config.swarm:
            # Signed, but not for this swarm: an entry copied into this swarm's stream.
            mine = self.config.swarm or "the one swarm"
            self._reject(entry_id, f"job {job.id} is for swarm {job.swarm!r}, not {mine}", fields)
            return
        with job_context(job.id):
            self._handle_job(entry_id, fields, job, slot)

    def _handle_job(
        self, entry_id: str, fields: dict[str, Any], job: Job, slot: SlotHandle | None
    ) -> None:
        digest = job_digest(fields)
        # The worker's own ledger first: Redis keys can be deleted by anyone who can write
        # to Redis; the ledger cannot. Then Redis, which other workers share.
        if not self.ledger.claim(digest, job.id, entry_id, job.expires):
            self._reject(
                entry_id, f"replay of job {job.id} (already taken in another entry)", fields
            )
            return
        if self.ledger.applied(digest, ANSWERED) is not None:
            self._reject(entry_id, f"replay of job {job.id} (answered already)", fields)
            return
        taken = self.queue.take(job.id, entry_id, ttl=2 * self.config.job_ttl_seconds + 60)
        if taken == "unreplicated":
            # No replica knows it was taken: nothing may change yet (a failover would
            # forget, and another worker run it again). Tried again from the pending list.
            log.warning("job %s left for later: no Redis replica has its start yet", job.id)
            self.state.recheck_pending.set()
            return
        if taken == "replay":
            self._reject(entry_id, f"replay of job {job.id}", fields)
            return

        log.info("%s by %s", job.text, job.requester)
        if taken == "cancelled":
            by = self.queue.record(job.id).get("cancelled_by", "someone")
            answer = Answer(
                False, {"error": f"cancelled by {by} before it started"}, "cancelled", "cancelled"
            )
            self._finish(entry_id, job, answer, digest=digest)
            return
        waited = time.time() - max(job.created, job.not_before)  # a scheduled job: since due
        # It sat in the queue (no worker, or a busy one): say it has started, with its first
        # progress. A job that answers without progress says so by answering: a note for
        # it would be one more message, and one more round trip per job in a backlog.
        note = f"a worker took job {job.id} after {waited:.0f}s in the queue" if waited > 1 else ""
        started = time.monotonic()
        try:
            answer = self._run(job, note, digest, slot)
        except HandedOver:
            log.info("left unanswered for the next worker to take over (this one is stopping)")
            return
        self._remember_change(job, answer)  # before the answer: an alert right after names it
        self._finish(entry_id, job, answer, time.monotonic() - started, digest)
        self._tell(job, answer)

    def _finish(
        self, entry_id: str, job: Job, answer: Answer, seconds: float = 0.0, digest: str = ""
    ) -> None:
        """Publish the answer; if Redis is down, keep trying: the job ran, it must be told.
        Then the ledger remembers it was answered (after, not before: a worker that dies in
        between answers it once more on its restart rather than never)."""
        log.info("%s in %.1fs: %s", answer.state, seconds, answer.summary)
        health.JOBS.labels(job.op, answer.state).inc()
        health.JOB_SECONDS.labels(job.op).observe(seconds)
        result = self._result(job, answer)
        audit = entry(
            {
                "who": job.requester,
                "command": job.text,
                "decision": answer.state,
                "job": job.id,
                "stack": job.stack,
                "outcome": answer.summary,
                "seconds": f"{seconds:.1f}",
                "worker": self.queue.consumer,
            }
        )
        self.state.wait_for_redis(
            lambda: self.queue.finish(entry_id, result, answer.state, answer.summary, audit)
        )
        if digest:
            self.ledger.mark_applied(digest, ANSWERED, time.time())

    def _reject(self, entry_id: str, reason: str, fields: dict[str, Any]) -> None:
        """A queue entry that must not run: dropped, kept in the rejected stream, audited."""
        log.warning("refused queue entry %s: %s", entry_id, reason)
        self.state.wait_for_redis(lambda: self.queue.reject(entry_id, reason, fields))
        self.queue.audit(
            {
                "decision": "rejected",
                "reason": reason,
                "entry": entry_id,
                "worker": self.queue.consumer,
            }
        )

    def _progress_now(self, job: Job, data: dict[str, Any]) -> None:
        try:
            self.queue.progress(Result("progress", job.id, job.op, True, data, job.reply_to))
        except StoreError as exc:
            log.warning("progress not sent: %s", exc)

    def _run(
        self, job: Job, note: str = "", digest: str = "", slot: SlotHandle | None = None
    ) -> Answer:
        decision = self.policy.may_run(job.requester, job.command)
        if not decision.allowed:
            return Answer(False, {"error": decision.reason}, "refused by the worker", "refused")
        last_sent: list[Any] = [0.0, ""]
        untold = [note] if note else []

        def progress(data: dict[str, Any]) -> None:
            if self.state.stop.is_set():
                raise HandedOver
            if untold:
                self._progress_now(job, {"started": untold.pop()})
            text = repr(data)
            now = time.monotonic()
            if text != last_sent[1] and now - last_sent[0] >= PROGRESS_INTERVAL:
                last_sent[:] = [now, text]
                self._progress_now(job, data)

        try:
            return self.handlers[job.op](self.tools, JobRun(job, progress, digest, slot))
        except HandedOver:
            raise
        except JobRefused as exc:
            return Answer(False, {"error": str(exc), "refused": True}, str(exc), "refused")
        except JobFailed as exc:
            return Answer(False, {"error": str(exc)}, str(exc))
        except JobCancelled as exc:
            return Answer(False, {"error": str(exc)}, "cancelled", "cancelled")
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            health.ERRORS.labels("docker").inc()
            log.warning("docker error: %s", exc)
            return Answer(
                False,
                {"error": f"Docker is not reachable or refused: {short(exc)}"},
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
                {"error": f"internal error: {type(exc).__name__}: {short(exc)} (see the log)"},
                "internal error",
            )

    def _result(self, job: Job, answer: Answer) -> Result:
        return Result("result", job.id, job.op, answer.ok, dict(answer.data), job.reply_to)

    def _remember_change(self, job: Job, answer: Answer) -> None:
        """The last change to each stack the job changed (as its notices name them), for
        alerts to name: kept whether or not notices are routed anywhere."""
        notice_for = self.notice_for.get(job.op)
        if notice_for is None:
            return
        changes = self.queue.change_store(self.config.signing_secret)
        for notice in notice_for(job, answer.data):
            if notice.stack:
                try:
                    changes.record(last_change(self.config, job, notice, answer))
                except StoreError as exc:
                    log.warning("last change not kept: %s", exc)

    def _tell(self, job: Job, answer: Answer) -> None:
        """The job's own notices, as its command words them: who, what changed, the
        outcome, how long it took. A stack told that the job started has that message
        edited to its outcome."""
        started = self.state.started.pop(job.id, set())
        notice_for = self.notice_for.get(job.op)
        if notice_for is None or not self.config.notice_routes:
            return
        notices = notice_for(job, answer.data)
        told = {n.stack for n in notices}
        for stack in sorted(started - told):  # started, then nothing to tell: say it ended
            notices.append(Notice(stack, f"{stack}: {job.text} {who(job)}: {answer.summary}"))
        for notice in notices:
            try:
                self.state.notices.post(
                    notice.stack,
                    notice.text,
                    list(notice.lines),
                    f"job-{job.id}-{notice.stack}",
                    notice.status,
                    job=job.id,
                    origin=job.reply_to,
                    story=f"job-{job.id}-{notice.stack}" if notice.stack in started else "",
                )
            except StoreError as exc:
                log.warning("notice not sent: %s", exc)


def last_change(config: Config, job: Job, notice: Notice, answer: Answer) -> LastChange:
    """What an alert on ``notice.stack`` will say changed it last, and how to undo it."""
    data = answer.data
    per_stack = [d for d in data.get("stacks", []) if d.get("stack") == notice.stack]
    commit = (per_stack[0] if per_stack else data).get("commit")
    services = tuple(
        line.split(":", 1)[0] for line in notice.lines if line.startswith(f"{notice.stack}_")
    )
    service = str(data.get("service", ""))
    if job.op == "deploy":
        undo = f"{config.prefix}rollback {notice.stack}"
    elif job.op in ("scale", "update") and service:
        undo = f"{config.prefix}rollback {service}"
    else:
        undo = ""
    return LastChange(
        stack=notice.stack,
        at=time.time(),
        job=job.id,
        who=job.requester,
        command=job.text,
        commit=commit_words(commit) if isinstance(commit, dict) else "",
        undo=undo,
        ok=notice.status != "failed",
        services=services or ((service,) if service else ()),
    )
