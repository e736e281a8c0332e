"""Jobs and results on the wire: JSON, signed with HMAC-SHA256, validated field by field.

The worker holds root-equivalent power through the Docker socket and Redis is shared
infrastructure, so nothing read from Redis is trusted: the signature is checked over the
exact bytes received (no re-serialisation), then every field is checked against the
operation's schema. Jobs and results are signed under different domain tags, so a result
can never be replayed as a job.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal, NotRequired, TypedDict, get_args

from bot.core.config import USER_ID, Secret
from bot.core.ids import stacks_named_by

MAX_JOB_BYTES = 16 * 1024  # a job is a command and a few names
MAX_RESULT_BYTES = 8 * 1024 * 1024  # a result can list every service of a large swarm
CLOCK_SKEW = 30.0
JOB_ID = re.compile(r"^[0-9]{1,18}$")
SWARM = re.compile(r"^([a-z][a-z0-9-]{0,31})?$")  # a name in [swarms], or "" (one swarm)
INBOX = re.compile(r"^[a-z0-9][a-z0-9:._-]{0,80}$")
_JOB_TAG = b"swarmbot-job-v1\0"
_RESULT_TAG = b"swarmbot-result-v1\0"


# An operation's job schema: argument name -> (pattern, required). Derived from each
# command's declared arguments (``commands/``), so the worker validates exactly the grammar
# the bot parsed; the worker passes the table in, this module knows no command.
Schema = Mapping[str, tuple[re.Pattern[str], bool]]
Schemas = Mapping[str, Schema]


# -- the payloads that cross Redis, typed ------------------------------------------------
# Results travel as JSON; these types say what each kind of payload holds, so that the
# worker that writes one and the command that reads it agree, and mypy checks both.

ResultKind = Literal["progress", "result", "notice"]
OutcomeState = Literal["converged", "failed", "rolled_back", "paused", "timeout"]
OUTCOME_STATES: tuple[OutcomeState, ...] = get_args(OutcomeState)


class OutcomeData(TypedDict):
    """How watching one service ended (``!deploy``, ``!restart``, ``!rollback``, ``!scale``)."""

    service: str
    state: OutcomeState
    running: int
    desired: int
    reason: str
    seconds: float
    logs: NotRequired[list[str]]  # the last log lines of a service that did not converge


class ChangeData(TypedDict):
    """One service a deploy would change or changed (``!diff``, deploys, notices)."""

    service: str
    change: str  # new | changed | not in the file
    details: list[str]
    restarts: bool  # whether swarm will replace the service's tasks


class ProblemData(TypedDict):
    """One finding of the pre-flight check."""

    service: str  # "" for the file as a whole
    key: str
    message: str
    error: bool  # errors stop a deploy; warnings do not


class DeployReport(TypedDict):
    """One stack's deploy, as the worker reports it."""

    stack: str
    ok: bool
    error: str
    outcomes: list[OutcomeData]
    problems: list[ProblemData]
    note: str
    cli: NotRequired[str]
    changes: NotRequired[list[ChangeData]]
    unchanged: NotRequired[bool]
    seconds: NotRequired[float]
    # Services in the swarm that the file no longer has: removed (with --prune), or left
    # running and named; the volumes the removed ones used, which stay.
    removed: NotRequired[list[str]]
    orphans: NotRequired[list[str]]
    volumes_kept: NotRequired[list[str]]
    # Earlier versions of the stack's file-based configs and secrets that no service uses
    # any more, removed once the deploy converged (never external ones, never volumes).
    objects_removed: NotRequired[list[str]]
    # The commit deployed (stacks from git): sha, short, subject, author, time.
    commit: NotRequired[dict[str, Any]]


class NoticeData(TypedDict, total=False):
    """A notice for a chat room; a job's own notice also says where its command was said
    (``origin``: a ``reply_to``), so a notice that cannot be posted is told there."""

    text: str
    detail: list[str]
    id: str
    status: Literal["info", "failed"]
    origin: dict[str, str]


class Rejected(Exception):
    """A job or result that must not be acted on; the message says why (for logs)."""


@dataclass(frozen=True)
class Job:
    id: str
    op: str
    args: dict[str, str]
    requester: str
    text: str  # the command as typed, for !jobs and logs; never interpreted
    reply_to: dict[str, str]  # "inbox" plus the adapter's own reference (room, thread)
    created: float
    expires: float
    # Not to run before this (Unix time; 0: at once): `!deploy dev at 22:00`. The job waits
    # in the queue's schedule until then; its time to live counts from then.
    not_before: float = 0.0
    # The swarm it is for, by its name in [swarms] ("" for a bot of one swarm): a worker
    # runs only its own swarm's jobs, whichever stream the entry was found in.
    swarm: str = ""

    @property
    def command(self) -> str:
        """The permission the job needs: its command's name, which is its operation."""
        return self.op

    @property
    def stack(self) -> str:
        """The stack the job is seen to be about, for who may see it in ``!jobs`` and
        ``!audit``: the stack it names, or the stack part of a full service name; "" when
        that cannot be told without the swarm (a short name, ``all``, no name)."""
        stack = self.args.get("stack", "")
        if stack:
            return "" if stack == "all" else stack
        named = stacks_named_by(self.args.get("service", ""))
        return named[1] if len(named) == 2 else ""


def sign(tag: bytes, payload: bytes, secret: Secret) -> str:
    """HMAC-SHA256 of ``payload`` under a domain ``tag``: jobs, results and sealed
    records (``bot.core.sealed``) each have their own tag, so none passes for another."""
    return hmac.new(secret.reveal(), tag + payload, hashlib.sha256).hexdigest()


def encode_job(job: Job, secret: Secret) -> dict[str, str]:
    payload = json.dumps(asdict(job), separators=(",", ":"), sort_keys=True).encode()
    return {"job": payload.decode(), "sig": sign(_JOB_TAG, payload, secret)}


def _verified_json(
    fields: dict[Any, Any], key: str, tag: bytes, secret: Secret, limit: int
) -> dict[str, Any]:
    fields = {_text(k): _text(v) for k, v in fields.items()}
    payload, sig = fields.get(key), fields.get("sig")
    if not payload or not sig:
        raise Rejected("unsigned or empty entry")
    data = payload.encode()
    if len(data) > limit:
        raise Rejected(f"payload of {len(data)} bytes is too large")
    # Bytes, not text: a signature field with non-ASCII characters (bad bytes read back
    # as U+FFFD) made compare_digest raise TypeError instead of saying "no".
    if not hmac.compare_digest(sign(tag, data, secret).encode(), sig.encode()):
        raise Rejected("bad signature")
    try:
        obj = json.loads(data)
    except ValueError:
        raise Rejected("signed payload is not JSON") from None
    if not isinstance(obj, dict):
        raise Rejected("payload is not an object")
    return obj


def job_digest(fields: dict[Any, Any]) -> str:
    """What identifies one signed job across queue entries: the digest of its signed bytes.
    A replay carries the same bytes in a new entry; a new job never has the same bytes (its
    id and creation time differ), even when Redis lost its data and job ids start over."""
    payload = next((v for k, v in fields.items() if _text(k) == "job"), "")
    return hashlib.sha256(_text(payload).encode("utf-8", "replace")).hexdigest()


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def decode_job(
    fields: dict[Any, Any], secret: Secret, now: float, max_ttl: float, schemas: Schemas
) -> Job:
    """Verify and validate a job entry read from Redis; raises ``Rejected``."""
    obj = _verified_json(fields, "job", _JOB_TAG, secret, MAX_JOB_BYTES)
    expected = {f for f in Job.__dataclass_fields__}
    # Entries queued before ``not_before`` and ``swarm`` existed have neither: they run at
    # once, on the one swarm there was.
    optional = {"not_before", "swarm"}
    if set(obj) | optional != expected:
        raise Rejected(f"fields {sorted((set(obj) | optional) ^ expected)} unexpected")
    job_id, op, args, requester, text, reply_to = (
        obj["id"],
        obj["op"],
        obj["args"],
        obj["requester"],
        obj["text"],
        obj["reply_to"],
    )
    if not isinstance(job_id, str) or not JOB_ID.match(job_id):
        raise Rejected("bad job id")
    if not isinstance(op, str) or op not in schemas:
        raise Rejected(f"unknown operation {op!r}")
    validate_args(op, args, schemas[op])
    if not isinstance(requester, str) or not USER_ID.match(requester):
        raise Rejected("bad requester")
    if not isinstance(text, str) or len(text) > 512:
        raise Rejected("bad command text")
    if (
        not isinstance(reply_to, dict)
        or not all(
            isinstance(k, str) and isinstance(v, str) and len(v) <= 512
            for k, v in reply_to.items()
        )
        or len(reply_to) > 8
        or not INBOX.match(reply_to.get("inbox", ""))
    ):
        raise Rejected("bad reply_to")
    swarm = obj.get("swarm", "")
    if not isinstance(swarm, str) or not SWARM.match(swarm):
        raise Rejected("bad swarm")
    created, expires = obj["created"], obj["expires"]
    not_before = obj.get("not_before", 0.0)
    times = (created, expires, not_before)
    if not all(isinstance(t, int | float) and not isinstance(t, bool) for t in times):
        raise Rejected("bad timestamps")
    start = max(created, not_before)
    if created > now + CLOCK_SKEW or expires - start > max_ttl + CLOCK_SKEW:
        raise Rejected("timestamps out of range")
    if not_before > now + CLOCK_SKEW:
        # Only the schedule puts it on the queue, when it is due: this one came early.
        raise Rejected("scheduled for later than now")
    job = Job(
        job_id,
        op,
        dict(args),
        requester,
        text,
        dict(reply_to),
        float(created),
        float(expires),
        float(not_before),
        swarm,
    )
    if expires < now:
        raise Expired(job)
    return job


class Expired(Rejected):
    """A genuine job that waited longer than its time to live: answered, never run."""

    def __init__(self, job: Job) -> None:
        super().__init__(f"job {job.id} expired")
        self.job = job


def validate_args(op: str, args: Any, schema: Schema) -> None:
    if not isinstance(args, dict) or not set(args) <= set(schema):
        raise Rejected(f"unexpected arguments for {op}")
    for name, (pattern, required) in schema.items():
        value = args.get(name)
        if value is None:
            if required:
                raise Rejected(f"{op} needs {name}")
        elif not isinstance(value, str) or not pattern.match(value):
            raise Rejected(f"bad {name} for {op}")


@dataclass(frozen=True)
class Result:
    """What the worker sends back: a final result, or a progress update on the way."""

    kind: ResultKind  # op "notice" with kind "notice": not about one job
    job: str
    op: str
    ok: bool
    data: dict[str, Any]
    reply_to: dict[str, str]


def encode_result(result: Result, secret: Secret) -> dict[str, str]:
    return sign_result_json(result_json(result), secret)


def result_json(result: Result) -> str:
    """The signed text of a result. Not ``asdict``: it deep-copies ``data`` first, which
    for a 500-service listing cost more than everything else the worker does for it."""
    fields = {
        "kind": result.kind,
        "job": result.job,
        "op": result.op,
        "ok": result.ok,
        "data": result.data,
        "reply_to": result.reply_to,
    }
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False)


def sign_result_json(text: str, secret: Secret) -> dict[str, str]:
    """The queue fields of a result already written by ``result_json``."""
    return {"result": text, "sig": sign(_RESULT_TAG, text.encode(), secret)}


def decode_result(fields: dict[Any, Any], secret: Secret, ops: Collection[str]) -> Result:
    obj = _verified_json(fields, "result", _RESULT_TAG, secret, MAX_RESULT_BYTES)
    try:
        result = Result(**obj)
    except TypeError:
        raise Rejected("bad result fields") from None
    notice = result.kind == "notice" and result.op == "notice"
    if not notice and (result.kind not in ("progress", "result") or result.op not in ops):
        raise Rejected("bad result kind or op")
    if not isinstance(result.data, dict) or not isinstance(result.reply_to, dict):
        raise Rejected("bad result data")
    return result
