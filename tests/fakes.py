"""Small fakes of the worker's shared blocks (``bot.core.operations.WorkerTools``), for
handler tests: each records what a handler asked of it, and answers from plain data. The
real blocks are tested against the real swarm; these let a handler's own logic be tested
in a millisecond.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.core.config import Config, parse
from bot.core.doctor import Finding
from bot.core.ids import STACK_LABEL
from bot.core.locks import Lock
from bot.core.operations import Answer, JobFailed, JobRun, ServiceChange, StackSource
from bot.core.policy import Policy
from bot.core.services import ServiceView
from bot.core.whereabouts import Whereabouts
from bot.core.wire import DeployReport, Job
from commands import REGISTRY

ADMIN = "console:admin"
DEV_ONLY = "console:dev"


def config() -> Config:
    raw = {
        "security": {"signing_secret": "s" * 40, "public_variables": ["DOMAIN"]},
        "variables": {"DOMAIN": "example.org", "DB_PASSWORD": "hunter2hunter2"},
        "roles": {
            "admin": {"users": [ADMIN], "commands": ["*"], "stacks": ["*"]},
            "dev": {"users": [DEV_ONLY], "commands": ["*"], "stacks": ["dev"]},
        },
    }
    return parse(raw, source=None, environ={}, chat=False, commands=REGISTRY)


def service(
    name: str,
    replicas: int | None = 1,
    mounts: tuple[dict[str, Any], ...] = (),
    labels: dict[str, str] | None = None,
    previous: bool = False,
    env: tuple[str, ...] = (),
) -> dict[str, Any]:
    stack = name.split("_")[0] if "_" in name else ""
    mode = {"Replicated": {"Replicas": replicas}} if replicas is not None else {"Global": {}}
    spec = {
        "Name": name,
        "Labels": {**({STACK_LABEL: stack} if stack else {}), **(labels or {})},
        "Mode": mode,
        "TaskTemplate": {
            "ContainerSpec": {
                "Image": "web:1@sha256:" + "a" * 64,
                "Mounts": list(mounts),
                "Env": list(env),
            },
            "Placement": {"Constraints": ["node.role == worker"]},
        },
        "UpdateConfig": {"Parallelism": 1, "Delay": 5_000_000_000, "Order": "start-first"},
    }
    return {"ID": f"id-{name}", "Spec": spec, **({"PreviousSpec": spec} if previous else {})}


@dataclass
class FakeEngine:
    every: list[dict[str, Any]] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    task_list: list[dict[str, Any]] = field(default_factory=list)
    node_list: list[dict[str, Any]] = field(default_factory=list)

    def services(self, stack: str | None = None, status: bool = False) -> list[dict[str, Any]]:
        return [
            s for s in self.every if stack is None or s["Spec"]["Labels"].get(STACK_LABEL) == stack
        ]

    def service_rows(self, stack: str | None = None) -> list[dict[str, Any]]:
        return [
            {
                "name": s["Spec"]["Name"],
                "stack": s["Spec"]["Labels"].get(STACK_LABEL, ""),
                "mode": "replicated",
                "running": 1,
                "desired": 1,
                "state": "",
                "image": "web:1",
                "updated": 0.0,
            }
            for s in self.services(stack)
        ]

    def task_rows(self, service_id: str) -> list[dict[str, Any]]:
        return [{"id": "t1", "service": service_id}]

    def nodes(self) -> list[dict[str, Any]]:
        return self.node_list

    def tasks(self, **filters: str) -> list[dict[str, Any]]:
        return self.task_list

    def node_rows(self) -> list[dict[str, Any]]:
        return [{"name": "n1"}]

    def stack_volumes(self, stack: str) -> list[str]:
        return self.volumes

    def set_availability(self, node_id: str, availability: str) -> None:
        raise AssertionError("handlers set availability through change_node")

    def set_node_labels(self, node_id: str, labels: dict[str, str]) -> None:
        node = next(n for n in self.node_list if n["ID"] == node_id)
        node["Spec"]["Labels"] = labels


@dataclass
class FakeCli:
    removed: list[str] = field(default_factory=list)
    on_remove: Callable[[], None] = lambda: None
    version: str = "26.1"

    def remove_stack(self, stack: str) -> None:
        self.removed.append(f"stack {stack}")
        self.on_remove()

    def remove_service(self, service_id: str) -> None:
        self.removed.append(f"service {service_id}")
        self.on_remove()


@dataclass
class FakeTurns:
    """Records each guarantee a handler takes, in order."""

    log: list[str] = field(default_factory=list)
    applied: set[str] = field(default_factory=set)

    @contextlib.contextmanager
    def stack_turn(self, stack: str, run: JobRun) -> Iterator[None]:
        self.log.append(f"turn {stack}")
        yield
        self.log.append(f"end turn {stack}")

    @contextlib.contextmanager
    def claim(self, names: list[str], run: JobRun) -> Iterator[None]:
        self.log.append(f"claim {','.join(names)}")
        yield

    def apply_once(self, run: JobRun, step: str, apply: Callable[[], object]) -> float:
        if step not in self.applied:
            apply()
            self.applied.add(step)
        self.log.append(f"applied {step}")
        return 0.0

    def first_try(self, run: JobRun, step: str) -> bool:
        return step not in self.applied

    def wait_until(self, done: Callable[[], bool], what: str) -> None:
        if not done():
            raise JobFailed(f"{what} after the deadline")
        self.log.append("waited")


@dataclass
class FakeFiles:
    plan: tuple[list[str], dict[str, set[str]]] = ([], {})
    rendered: dict[str, Any] | None = field(default_factory=dict)
    sources: list[str | None] = field(default_factory=list)

    def source(self, ref: str | None = None) -> StackSource:
        self.sources.append(ref)
        commit = {"sha": ref, "short": (ref or "")[:7], "subject": "Bump", "author": "Bob"}
        return StackSource(Path("/stacks"), commit if ref else None)

    def stack_files(self, source: StackSource | None = None) -> dict[str, Path]:
        return {"dev": Path("/stacks/dev.yaml"), "ci": Path("/stacks/ci.yaml")}

    def preflight(
        self, stack: str, source: StackSource | None = None, requester: str = ""
    ) -> tuple[dict[str, Any] | None, list[Any], str]:
        problem = {"service": "web", "key": "image", "message": "no tag", "error": False}
        return self.rendered, [problem], "" if self.rendered is not None else "no docker CLI"

    def render(
        self, stack: str, source: StackSource | None = None, requester: str = ""
    ) -> dict[str, Any]:
        if self.rendered is None:
            raise JobFailed("no docker CLI")
        return self.rendered

    def diff(self, stack: str, rendered: dict[str, Any]) -> list[Any]:
        return [{"service": f"{stack}_web", "change": "changed", "details": ["image"]}]

    def deploy_plan(self, source: StackSource) -> tuple[list[str], dict[str, set[str]]]:
        return self.plan

    def stack_commits(self, stacks: list[str], source: StackSource) -> dict[str, dict[str, Any]]:
        return {}


@dataclass
class FakeTools:
    engine: FakeEngine = field(default_factory=FakeEngine)
    cli: FakeCli = field(default_factory=FakeCli)
    turns: FakeTurns = field(default_factory=FakeTurns)
    files: FakeFiles = field(default_factory=FakeFiles)
    config: Config = field(default_factory=config)
    consumer: str = "worker-1"
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    failing_stacks: set[str] = field(default_factory=set)
    held_locks: dict[str, Lock] = field(default_factory=dict)

    @property
    def policy(self) -> Policy:
        return Policy(self.config.roles)

    def allow(self, job: Job, stack: str) -> None:
        decision = self.policy.may_touch(job.requester, job.command, stack)
        if not decision.allowed:
            raise JobFailed(decision.reason)

    def locks(self) -> dict[str, Lock]:
        return dict(self.held_locks)

    def visible(self, job: Job, services: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            s
            for s in services
            if self.policy.may_touch(
                job.requester, job.command, s["Spec"]["Labels"].get(STACK_LABEL, "")
            ).allowed
        ]

    def resolve(self, job: Job) -> ServiceView:
        for s in self.visible(job, self.engine.every):
            if s["Spec"]["Name"] in (job.args["service"], f"dev_{job.args['service']}"):
                return ServiceView.of(s)
        raise JobFailed(f"no service `{job.args['service']}`")

    def change_service(self, run: JobRun, service: ServiceView, change: ServiceChange) -> Answer:
        self.calls.append(("change_service", service.name, change))
        return Answer(True, {"service": service.name}, "changed")

    def volumes(self) -> list[dict[str, Any]]:
        return [
            {
                "volume": "dev_data",
                "stack": "dev",
                "services": ["dev_db"],
                "nodes": ["worker1"],
                "driver": "local",
                "portable": False,
                "pinned": "",
            },
            {
                "volume": "ops_media",
                "stack": "ops",
                "services": ["ops_files"],
                "nodes": ["worker2"],
                "driver": "local (nfs)",
                "portable": True,
                "pinned": "",
            },
        ]

    def doctor(self) -> list[Finding]:
        return [
            Finding("docker", True, "swarm s, node manager1 (manager)"),
            Finding("ipvs", False, "no ip_vs module", "deploy with the host-network override"),
        ]

    def whereabouts(self) -> Whereabouts:
        return Whereabouts("unix:///var/run/docker.sock", "n1abc", "manager1", True, "s" * 25)

    def find_node(self, name: str) -> dict[str, Any]:
        for node in self.engine.node_list:
            if name in (node["ID"], node["Description"]["Hostname"]):
                return node
        raise JobFailed(f"no node `{name}`")

    def change_node(
        self, run: JobRun, name: str, availability: str, force: bool = False
    ) -> Answer:
        self.calls.append(("change_node", name, availability, force))
        return Answer(True, {"node": name}, "done")

    def log_tail(self, service_id: str, lines: int) -> list[str]:
        return [f"line {i}" for i in range(min(lines, 3))]

    def deploy_stack(
        self,
        stack: str,
        run: JobRun,
        force: bool = False,
        prune: bool = False,
        source: StackSource | None = None,
    ) -> DeployReport:
        self.calls.append(("deploy_stack", stack, force, prune, source.commit if source else None))
        run.progress({"stack": stack, "services": [], "total": 1})
        ok = stack not in self.failing_stacks
        return DeployReport(
            stack=stack, ok=ok, error="" if ok else "boom", outcomes=[], problems=[], note=""
        )

    def image_updates(self, services: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append(("image_updates", [s["Spec"]["Name"] for s in services]))
        return {"images": [], "services": len(services), "requests": 0}


def run_job(
    tools: FakeTools, text: str, user: str = ADMIN, **args: str
) -> tuple[Answer, list[dict[str, Any]]]:
    command = text.split()[0]
    job = Job("7", command, args, user, f"!{text}", {"inbox": "test"}, 0.0, 1e12)
    progress: list[dict[str, Any]] = []
    handler = REGISTRY[command].handler
    assert handler is not None
    return handler(tools, JobRun(job, progress.append, digest="d7")), progress
