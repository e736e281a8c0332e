"""What a command's worker-side handler is given, and what it gives back.

A handler is a plain function in the command's own file (``commands/<name>.py``):
``handle(tools, job, progress) -> Answer``. It runs in the worker, but its module is
imported by the chat process too, so it may not import docker: everything it does to the
swarm goes through ``WorkerTools``, which the worker implements (``bot.swarm.worker``).
The tools are the swarm operations every command shares (resolve a service the requester
may act on, change one service and watch it converge, deploy a stack under its lock, ...);
a new command composes them and needs no change anywhere else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from bot.core.config import Config
from bot.core.policy import Policy
from bot.core.wire import ChangeData, DeployReport, Job, ProblemData

AnswerState = Literal["succeeded", "failed", "refused", "cancelled", "expired"]
NoticeStatus = Literal["info", "failed"]
Progress = Callable[[dict[str, Any]], None]


class JobFailed(Exception):
    """An expected failure whose message is safe to show in chat."""


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


class Engine(Protocol):
    """The Docker Engine reads and writes a handler may use (services as Engine API dicts)."""

    def services(self, stack: str | None = None, status: bool = False) -> list[dict[str, Any]]: ...

    def service_rows(self, stack: str | None = None) -> list[dict[str, Any]]: ...

    def task_rows(self, service_id: str) -> list[dict[str, Any]]: ...

    def nodes(self) -> list[dict[str, Any]]: ...

    def tasks(self, **filters: str) -> list[dict[str, Any]]: ...

    def node_rows(self) -> list[dict[str, Any]]: ...

    def set_availability(self, node_id: str, availability: str) -> None: ...

    def force_update(self, service_id: str) -> None: ...

    def update_service(self, service_id: str, **changes: Any) -> None:
        """Change the named parts of a service's spec (``mode=...``, ``labels=...``),
        keeping the rest as it is."""
        ...


class WorkerTools(Protocol):
    """The swarm operations shared by command handlers."""

    @property
    def config(self) -> Config: ...

    @property
    def policy(self) -> Policy: ...

    @property
    def engine(self) -> Engine: ...

    @property
    def consumer(self) -> str:
        """This worker's name."""
        ...

    def allow(self, job: Job, stack: str) -> None:
        """Raise ``JobFailed`` unless the requester may run the job's command on ``stack``."""
        ...

    def resolve(self, job: Job) -> dict[str, Any]:
        """The service ``job.args["service"]`` names, among those the requester may act on;
        raises ``JobFailed`` (no such service, ambiguous) naming only those."""
        ...

    def change_service(
        self,
        job: Job,
        service: dict[str, Any],
        progress: Progress,
        apply: Callable[[], object],
        rollback: bool = False,
    ) -> Answer:
        """Apply one change to one service (once, even across a worker crash), under its
        stack's lock, then watch it converge: the usual outcome."""
        ...

    def rollback_service(self, service_id: str) -> None: ...

    def change_node(
        self, job: Job, name: str, availability: str, progress: Progress, force: bool = False
    ) -> Answer:
        """Set node ``name``'s availability (active, pause, drain), once; a drain is checked
        first (refused if a service would lose placement, unless ``force``) and watched
        until the node's tasks have moved."""
        ...

    def log_tail(self, service_id: str, lines: int) -> list[str]:
        """The service's last log lines, secrets masked."""
        ...

    def source(self, ref: str | None = None) -> StackSource:
        """The stack files a job reads: with a [git] repository, fetched first, at ``ref``
        (the branch's head without one); else the stacks directory (``ref`` refused)."""
        ...

    def stack_files(self, source: StackSource | None = None) -> dict[str, Path]: ...

    def stack_file(
        self, stack: str, source: StackSource | None = None, requester: str = ""
    ) -> Path: ...

    def preflight(
        self, stack: str, source: StackSource | None = None, requester: str = ""
    ) -> tuple[dict[str, Any] | None, list[ProblemData], str]:
        """Render and check a stack file: (rendered or None, problems, note)."""
        ...

    def stack_commits(self, stacks: list[str], source: StackSource) -> dict[str, dict[str, Any]]:
        """Per deployed stack, from its services' labels and the repository: the commit it
        runs, the one before it, and the commits up to ``source``'s that touch its files."""
        ...

    def diff(self, stack: str, rendered: dict[str, Any]) -> list[ChangeData]: ...

    def deploy_stack(
        self,
        stack: str,
        job: Job,
        progress: Progress,
        force: bool = False,
        prune: bool = False,
        source: StackSource | None = None,
    ) -> DeployReport:
        """Deploy one stack under its lock and watch it converge: the deploy report. With
        ``prune``, the stack's services the file no longer has are removed (never a volume);
        without, they are left running and named in the report."""
        ...

    def remove_service(self, job: Job, service: dict[str, Any], progress: Progress) -> Answer:
        """``docker service rm`` under the stack's lock, once; the answer names the volumes
        the service used, which stay."""
        ...

    def deploy_plan(self, source: StackSource) -> tuple[list[str], dict[str, set[str]]]:
        """Every stack file in dependency order (the order replies list them in), and the
        stacks each one waits for; raises ``JobFailed`` on a cycle."""
        ...

    def deploy_stacks(
        self, needs: dict[str, set[str]], job: Job, progress: Progress, source: StackSource
    ) -> tuple[dict[str, DeployReport], dict[str, str]]:
        """Deploy every stack in ``needs`` once the stacks it needs succeeded, those free to
        go at the same time, each under its own lock: the reports by stack, and the stacks
        not deployed with why ("needs ci, which failed")."""
        ...

    def image_updates(self, job: Job, stack: str | None) -> dict[str, Any]:
        """Per image the requester's services run (in ``stack``, or all): the digest they
        run, the one the tag points to now, a newer tag the semver policy allows; and the
        registry requests it took. Pulls nothing."""
        ...

    def undeploy(self, job: Job, stack: str, progress: Progress) -> dict[str, Any]:
        """``docker stack rm`` under the stack's lock; never removes volumes."""
        ...


Handler = Callable[[WorkerTools, Job, Progress], Answer]
NoticeFor = Callable[[Job, Mapping[str, Any]], list[Notice]]


def who(job: Job) -> str:
    """How a notice names the job that made the change."""
    return f"by {job.requester} via {job.text}, job {job.id}"
