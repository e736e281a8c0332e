"""What a command's worker-side handler is given, and what it gives back.

A handler is a plain function in the command's own file (``commands/<name>.py``):
``handle(tools, run) -> Answer``. It runs in the worker, but its module is imported by the
chat process too, so it may not import docker: everything it does to the swarm goes
through ``WorkerTools``, which the worker implements (``bot.swarm.worker``), and ``run``
(``JobRun``) is the job itself, passed explicitly to the blocks that need it.

The tools are small shared blocks, each used by several commands: the Engine reads and
writes, the docker CLI's stack operations, the guarantees every change shares (``turns``:
one job per stack, claims, apply-once, waiting), the stack files (``files``: source,
pre-flight, diff, order), and the composed operations (resolve a service the requester may
act on, change one service and watch it converge, deploy a stack). A command's own logic
stays in its file; a new command composes blocks and needs no change anywhere else.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

from bot.core.config import Config
from bot.core.doctor import Finding
from bot.core.locks import Lock
from bot.core.policy import Policy
from bot.core.services import ServiceView
from bot.core.whereabouts import Whereabouts
from bot.core.wire import ChangeData, DeployReport, Job, ProblemData

AnswerState = Literal["succeeded", "failed", "refused", "cancelled", "expired"]
NoticeStatus = Literal["info", "failed"]
Progress = Callable[[dict[str, Any]], None]


class JobFailed(Exception):
    """An expected failure whose message is safe to show in chat."""


class JobRefused(JobFailed):
    """The job may not run as asked (its stack is locked by someone else, its window is
    closed): answered as refused, not failed; the message is safe to show in chat."""


class JobCancelled(Exception):
    """The job was cancelled while it waited for its stack."""


@dataclass
class Answer:
    """A handler's result: shown to the requester by the command's renderer."""

    ok: bool
    data: Mapping[str, Any]  # what the command's renderer reads: a typed payload or a dict
    summary: str  # one line for !jobs, the audit trail and the log
    state: AnswerState | Literal[""] = field(default="")

    def __post_init__(self) -> None:
        self.state = self.state or ("succeeded" if self.ok else "failed")


@dataclass(frozen=True)
class Notice:
    """A notice a finished job posts to the rooms routed for ``stack``."""

    stack: str
    text: str
    lines: tuple[str, ...] = ()
    status: NoticeStatus = "info"


@dataclass(frozen=True)
class StackSource:
    """Where a job's stack files come from: the stacks directory, or one commit's files."""

    folder: Path
    commit: Mapping[str, Any] | None = None  # sha, short, subject, author, time (git only)
    # Why the files are from the clone's last fetch rather than a fresh one ("" if fresh).
    stale: str = ""

    def names(self) -> str:
        """``abc1234 "Bump gerrit" (Bob)``, or "" for the stacks directory."""
        said = commit_words(self.commit) if self.commit else ""
        return f"{said} (as last fetched: {self.stale})" if said and self.stale else said


def commit_words(commit: Mapping[str, Any]) -> str:
    """How answers and notices name a commit: ``abc1234 "Bump gerrit" (Bob)``."""
    return f'{commit["short"]} "{commit["subject"]}" ({commit["author"]})'


class SlotHandle(Protocol):
    """The worker slot a job runs in: given back while the job only waits for its stack."""

    def give_back(self) -> None: ...

    def take(self, stop: Any) -> None: ...


@dataclass(frozen=True)
class JobRun:
    """One job as its handler runs it, passed explicitly to every shared block that needs
    more than the job: where its progress goes, the key under which the worker's ledger
    remembers what it applied (the signed entry's digest), and its slot."""

    job: Job
    progress: Progress
    digest: str = ""
    slot: SlotHandle | None = None

    @property
    def args(self) -> dict[str, str]:
        return self.job.args

    def with_progress(self, progress: Progress) -> JobRun:
        """The same job reporting elsewhere (one stack's part of ``!deploy all``)."""
        return replace(self, progress=progress)


@dataclass(frozen=True)
class ServiceChange:
    """What a one-service command changes, said rather than done: the tools apply it once
    and watch it converge (no callback into the engine from a command)."""

    kind: Literal["restart", "update", "rollback"]
    spec: Mapping[str, Any] = field(default_factory=dict)  # for "update": Engine API names

    @classmethod
    def restart(cls) -> ServiceChange:
        return cls("restart")

    @classmethod
    def update(cls, **spec: Any) -> ServiceChange:
        return cls("update", spec)

    @classmethod
    def rollback(cls) -> ServiceChange:
        return cls("rollback")


class Engine(Protocol):
    """The Docker Engine reads and writes a handler may use (services as Engine API dicts;
    ``ServiceView.of`` reads one)."""

    def services(self, stack: str | None = None, status: bool = False) -> list[dict[str, Any]]: ...

    def service_rows(self, stack: str | None = None) -> list[dict[str, Any]]: ...

    def task_rows(self, service_id: str) -> list[dict[str, Any]]: ...

    def nodes(self) -> list[dict[str, Any]]: ...

    def tasks(self, **filters: str) -> list[dict[str, Any]]: ...

    def node_rows(self) -> list[dict[str, Any]]: ...

    def stack_volumes(self, stack: str) -> list[str]:
        """Volumes a stack created (they outlive it)."""
        ...

    def set_availability(self, node_id: str, availability: str) -> None: ...

    def set_node_labels(self, node_id: str, labels: dict[str, str]) -> None:
        """The node's labels become ``labels`` (the rest of its spec as it is)."""
        ...


class StackCli(Protocol):
    """What only the docker CLI does as operators know it (``docker stack rm``, ...)."""

    @property
    def version(self) -> str: ...

    def remove_stack(self, stack: str) -> None: ...

    def remove_service(self, service_id: str) -> None: ...


class Turns(Protocol):
    """The guarantees every change shares."""

    def stack_turn(self, stack: str, run: JobRun) -> contextlib.AbstractContextManager[None]:
        """One job per stack at a time, across all workers: a waiting job says what it
        waits behind, gives its slot back meanwhile, and can be cancelled."""
        ...

    def claim(self, names: list[str], run: JobRun) -> contextlib.AbstractContextManager[None]:
        """While a job changes these stacks or services, the notice watcher leaves them to
        it; what the job made or removed is left to it afterwards too."""
        ...

    def apply_once(self, run: JobRun, step: str, apply: Callable[[], object]) -> float:
        """Run a side effect unless an earlier attempt at this job (a worker that died after
        it) did; returns when it was applied, from when convergence is judged."""
        ...

    def first_try(self, run: JobRun, step: str) -> bool:
        """No earlier attempt at this job applied ``step`` (a job taken over after its
        worker died is not the first)."""
        ...

    def wait_until(self, done: Callable[[], bool], what: str) -> None:
        """Until ``done()``, within the deploy deadline (``JobFailed`` naming ``what`` after
        it); a stopping worker hands the job over."""
        ...


class StackFiles(Protocol):
    """The stack files a job reads, checked."""

    def source(self, ref: str | None = None) -> StackSource:
        """With a [git] repository, fetched first, at ``ref`` (the branch's head without
        one); else the stacks directory (``ref`` refused)."""
        ...

    def stack_files(self, source: StackSource | None = None) -> dict[str, Path]: ...

    def preflight(
        self, stack: str, source: StackSource | None = None, requester: str = ""
    ) -> tuple[dict[str, Any] | None, list[ProblemData], str]:
        """Render and check a stack file: (rendered or None, problems, note)."""
        ...

    def render(
        self, stack: str, source: StackSource | None = None, requester: str = ""
    ) -> dict[str, Any]:
        """The stack file rendered, unchecked (what a diff compares); ``JobFailed`` when
        it cannot be."""
        ...

    def diff(self, stack: str, rendered: dict[str, Any]) -> list[ChangeData]: ...

    def deploy_plan(self, source: StackSource) -> tuple[list[str], dict[str, set[str]]]:
        """Every stack file in dependency order, and the stacks each one waits for; raises
        ``JobFailed`` on a cycle."""
        ...

    def stack_commits(self, stacks: list[str], source: StackSource) -> dict[str, dict[str, Any]]:
        """Per deployed stack, from its services' labels and the repository: the commit it
        runs, the one before it, and the commits up to ``source``'s that touch its files."""
        ...


class WorkerTools(Protocol):
    """The shared blocks command handlers compose."""

    @property
    def config(self) -> Config: ...

    @property
    def policy(self) -> Policy: ...

    @property
    def engine(self) -> Engine: ...

    @property
    def cli(self) -> StackCli: ...

    @property
    def turns(self) -> Turns: ...

    @property
    def files(self) -> StackFiles: ...

    @property
    def consumer(self) -> str:
        """This worker's name."""
        ...

    def whereabouts(self) -> Whereabouts:
        """The daemon the worker reaches, its node and the swarm (as last looked at)."""
        ...

    def volumes(self) -> list[dict[str, Any]]:
        """Each named volume services mount: ``volume``, ``stack``, ``services``, ``nodes``
        (where its data is: the nodes its tasks ran on, as recorded and as running now),
        ``driver``, ``portable`` (shared storage), ``pinned`` (the one node its services'
        constraints allow, or "")."""
        ...

    def doctor(self) -> list[Finding]:
        """The worker's checks of what it stands on: its daemon, node and swarm, Redis,
        IPVS, the chat platforms from its network (``bot.core.doctor``)."""
        ...

    def allow(self, job: Job, stack: str) -> None:
        """Raise ``JobFailed`` unless the requester may run the job's command on ``stack``."""
        ...

    def locks(self) -> dict[str, Lock]:
        """The stack locks standing now (stack or "all" -> the lock)."""
        ...

    def visible(self, job: Job, services: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The services of stacks the requester may run the job's command on."""
        ...

    def resolve(self, job: Job) -> ServiceView:
        """The service ``job.args["service"]`` names, among those the requester may act on;
        raises ``JobFailed`` (no such service, ambiguous) naming only those."""
        ...

    def change_service(self, run: JobRun, service: ServiceView, change: ServiceChange) -> Answer:
        """Apply one change to one service (once, even across a worker crash), under its
        stack's lock, then watch it converge: the usual outcome."""
        ...

    def find_node(self, name: str) -> dict[str, Any]:
        """The node ``name`` (hostname, ID or an unambiguous ID prefix); ``JobFailed``
        naming the nodes there are when there is none."""
        ...

    def change_node(
        self, run: JobRun, name: str, availability: str, force: bool = False
    ) -> Answer:
        """Set node ``name``'s availability (active, pause, drain), once; a drain is checked
        first (refused if a service would lose placement, unless ``force``) and watched
        until the node's tasks have moved."""
        ...

    def log_tail(self, service_id: str, lines: int) -> list[str]:
        """The service's last log lines, secrets masked."""
        ...

    def deploy_stack(
        self,
        stack: str,
        run: JobRun,
        force: bool = False,
        prune: bool = False,
        source: StackSource | None = None,
    ) -> DeployReport:
        """Deploy one stack under its lock and watch it converge: the deploy report. With
        ``prune``, the stack's services the file no longer has are removed (never a volume);
        without, they are left running and named in the report."""
        ...

    def image_updates(self, services: list[dict[str, Any]]) -> dict[str, Any]:
        """Per image these services run: the digest they run, the one the tag points to
        now, a newer tag the semver policy allows; and the registry requests it took.
        Pulls nothing (the source watcher reads the registry the same way)."""
        ...


Handler = Callable[[WorkerTools, JobRun], Answer]
NoticeFor = Callable[[Job, Mapping[str, Any]], list[Notice]]


def who(job: Job) -> str:
    """How a notice names the job that made the change."""
    return f"by {job.requester} via {job.text}, job {job.id}"
