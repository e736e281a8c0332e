"""``!inspect <service>``: what a service is, read from swarm: the image and the digest it
runs, its environment (values masked unless public), its mounts (and for a named volume,
the nodes its tasks ran on: a volume is local to a node, so a task placed elsewhere starts
with an empty one), placement constraints, published ports, update and rollback policy, and
labels. Reads only; changes nothing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.core.ids import hostname
from bot.core.operations import Answer, JobRun, WorkerTools
from bot.core.replies import Reply, Table, plural
from bot.core.wire import Result
from commands.base import Command, error_reply, service_arg

MASKED = "***"
# Update and rollback policy, as `docker service inspect --pretty` names the keys.
POLICY_KEYS = ("Parallelism", "Delay", "FailureAction", "Monitor", "MaxFailureRatio", "Order")


def handle(tools: WorkerTools, run: JobRun) -> Answer:
    service = tools.resolve(run.job)
    public = _public_values(tools.config.public_variables, tools.config.variables)
    hosts = {n["ID"]: hostname(n) for n in tools.engine.nodes()}
    ran_on = sorted(
        {hosts.get(t.get("NodeID", ""), "?") for t in tools.engine.tasks(service=service.id)}
    )
    data = {
        "service": service.name,
        "stack": service.stack,
        "image": service.image,
        "digest": service.digest,
        "replicas": service.replicas,
        "env": [[key, _shown(key, value, public)] for key, value in service.env],
        "mounts": [
            _mount(m.kind, m.source, m.target, m.read_only, ran_on) for m in service.mounts
        ],
        "constraints": list(service.constraints),
        "ports": [f"{p.published}:{p.target}/{p.protocol} ({p.mode})" for p in service.ports],
        "update": _policy(service.update_config),
        "rollback": _policy(service.rollback_config),
        "labels": [[k, v] for k, v in sorted(service.labels.items())],
    }
    return Answer(True, data, f"{service.name}: {plural(len(service.mounts), 'mount')}")


def _public_values(names: frozenset[str], variables: Mapping[str, str]) -> set[str]:
    """Values that may be shown: those of the [variables] declared public (DOMAIN)."""
    return {variables[n] for n in names if n in variables}


def _shown(key: str, value: str, public: set[str]) -> str:
    """An environment value as chat shows it: masked, unless it is a public variable's
    value (``example.org``) or empty. A secret must never reach a room."""
    return value if value == "" or value in public else MASKED


def _mount(kind: str, source: str, target: str, read_only: bool, ran_on: list[str]) -> list[str]:
    mode = "ro" if read_only else "rw"
    where = ", ".join(ran_on) if kind == "volume" and source else ""
    return [kind, source or "-", target, mode, where or "-"]


def _policy(config: Mapping[str, Any]) -> str:
    parts = []
    for key in POLICY_KEYS:
        if key in config:
            value = config[key]
            if key in ("Delay", "Monitor") and isinstance(value, int):
                value = f"{value / 1e9:g}s"  # the Engine API says nanoseconds
            parts.append(f"{key[0].lower()}{key[1:]}={value}")
    return ", ".join(parts) or "swarm's defaults"


def render(result: Result) -> Reply:
    if not result.ok:
        return error_reply(result)
    d = result.data
    replicas = "global" if d["replicas"] is None else plural(d["replicas"], "replica")
    runs = (
        f"{d['image']} @ {d['digest'][:19]}" if d["digest"] else f"{d['image']} (no pinned digest)"
    )
    lines = [
        f"image: {runs}",
        f"mode: {replicas}",
        "env: " + (", ".join(f"{k}={v}" for k, v in d["env"]) or "none"),
        "constraints: " + (", ".join(d["constraints"]) or "none"),
        "ports: " + (", ".join(d["ports"]) or "none published"),
        f"update: {d['update']}",
        f"rollback: {d['rollback']}",
        "labels: " + (", ".join(f"{k}={v}" for k, v in d["labels"]) or "none"),
    ]
    table = None
    if d["mounts"]:
        table = Table(
            ("TYPE", "SOURCE", "TARGET", "MODE", "TASKS RAN ON"),
            tuple(tuple(m) for m in d["mounts"]),
        )
    head = f"{d['service']}" + (f" (stack {d['stack']})" if d["stack"] else "")
    return Reply(head, table, tuple(lines), status="ok", job=result.job)


COMMAND = Command(
    name="inspect",
    summary="show what a service is: image and digest, env (masked), mounts and where its "
    "volumes' tasks ran, constraints, ports, update and rollback policy, labels",
    args=(service_arg(),),
    examples=("!inspect gerrit", "!inspect dev_gerrit"),
    read_only=True,
    handler=handle,
    render=render,
)
