"""What is wrong with a stack file before a deploy: variables left unset, external
objects that do not exist, keys ``docker stack deploy`` ignores, images without a pinned
tag, bind mounts of missing paths, constraints no node satisfies.

It works on the file as the docker CLI renders it (``docker stack config``, CLI 23+), so
interpolation and merging are the CLI's own, and on a snapshot of the swarm taken through
the SDK. Pure functions: the worker fetches, these judge.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bot.swarm.placement import satisfies, unplaceable

# Local-driver volume types that mount shared storage: the data is not on one node.
SHARED_TYPES = ("nfs", "nfs4", "cifs", "smb", "glusterfs", "ceph")

# Compose keys `docker stack deploy` ignores: an operator who relies on them is surprised.
IGNORED_KEYS = {
    "build": "images are not built on deploy",
    "restart": "use deploy.restart_policy",
    "depends_on": "swarm starts services in no order",
    "container_name": "swarm names containers itself",
    "links": "use networks",
    "external_links": "use networks",
    "network_mode": "not supported by swarm services",
    "privileged": "not supported by swarm services",
    "security_opt": "not supported by swarm services",
    "devices": "not supported by swarm services",
    "cgroup_parent": "not supported by swarm services",
    "userns_mode": "not supported by swarm services",
    "volumes_from": "not supported by swarm services",
}
VARIABLE = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?+])?[^}]*\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


@dataclass(frozen=True)
class Problem:
    service: str  # "" for the file as a whole
    key: str
    message: str
    error: bool  # errors stop a deploy; warnings do not


@dataclass
class SwarmSnapshot:
    """What `!check` needs to know about the swarm."""

    networks: set[str] = field(default_factory=set)
    secrets: set[str] = field(default_factory=set)
    configs: set[str] = field(default_factory=set)
    volumes: set[str] = field(default_factory=set)
    nodes: list[dict[str, Any]] = field(default_factory=list)
    # Volume -> the nodes its data is on (the worker's record, bot.queue.volumestore).
    volume_nodes: dict[str, list[str]] = field(default_factory=dict)


def unset_variables(raw: str, variables: dict[str, str]) -> list[Problem]:
    """``${NAME}`` with no default whose value is missing or empty: compose would render it
    as an empty string without a word (``${NAME:?}`` fails in the CLI instead)."""
    problems: dict[str, Problem] = {}
    for line in raw.splitlines():
        if line.lstrip().startswith("#"):
            continue
        for match in VARIABLE.finditer(line.replace("$$", "")):
            name = match.group("braced") or match.group("bare")
            op = match.group("op") or ""
            if op in (":-", "-", ":+", "+"):
                continue  # has a default
            if not variables.get(name):
                state = "empty" if name in variables else "not set"
                problems[name] = Problem(
                    "", f"${{{name}}}", f"variable {name} is {state} (deploy.variables)", True
                )
    return list(problems.values())


def volume_sources(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(type, source) of each of a service's volumes, short form or long: as written in the
    raw file (before the CLI rewrote it), or as rendered."""
    out = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, str):
            source = volume.split(":", 1)[0]
            out.append(("bind" if source.startswith((".", "/", "~")) else "volume", source))
        elif isinstance(volume, dict):
            out.append((volume.get("type", "volume"), str(volume.get("source", ""))))
    return out


def check(
    stack: str,
    raw: str,
    rendered: dict[str, Any],
    file_dir: Path,
    variables: dict[str, str],
    swarm: SwarmSnapshot,
) -> list[Problem]:
    problems = unset_variables(raw, variables) + _missing_externals(rendered, swarm)
    problems += _nfs_without_server(rendered)
    try:
        raw_doc = yaml.safe_load(raw) or {}
    except yaml.YAMLError:
        raw_doc = {}
    raw_services = raw_doc.get("services") or {}
    for name, service in sorted((rendered.get("services") or {}).items()):
        problems += _ignored_keys(name, service)
        problems += _image(name, str(service.get("image") or ""))
        problems += _bind_sources(name, raw_services.get(name) or {}, file_dir)
        problems += _placement(name, service, swarm.nodes)
        problems += _local_data(stack, name, service, rendered, swarm)
    return problems


def _missing_externals(rendered: dict[str, Any], swarm: SwarmSnapshot) -> list[Problem]:
    problems = []
    for kind, existing in (
        ("networks", swarm.networks),
        ("secrets", swarm.secrets),
        ("configs", swarm.configs),
        ("volumes", swarm.volumes),
    ):
        for key, spec in (rendered.get(kind) or {}).items():
            spec = spec or {}
            name = spec.get("name") or key
            if spec.get("external") and name not in existing:
                message = f"external {kind[:-1]} {name} does not exist"
                problems.append(Problem("", f"{kind}.{key}", message, True))
    return problems


def _ignored_keys(name: str, service: dict[str, Any]) -> list[Problem]:
    return [
        Problem(name, key, f"ignored by docker stack deploy: {why}", False)
        for key, why in IGNORED_KEYS.items()
        if key in service
    ]


def _image(name: str, image: str) -> list[Problem]:
    tagless = image.split("@", 1)[0].rsplit("/", 1)[-1]
    if not image:
        return [Problem(name, "image", "no image", True)]
    if "@" not in image and ":" not in tagless:
        return [Problem(name, "image", f"{image} has no tag: pin one", False)]
    if image.endswith(":latest"):
        return [Problem(name, "image", f"{image} is on :latest: pin a version", False)]
    return []


def _bind_sources(name: str, raw_service: dict[str, Any], file_dir: Path) -> list[Problem]:
    """Relative bind mounts, as written (the CLI makes them absolute when it renders)."""
    return [
        Problem(name, "volumes", f"bind mount source {source} does not exist", True)
        for kind, source in volume_sources(raw_service)
        if kind == "bind" and source.startswith(".") and not (file_dir / source).exists()
    ]


def _local_data(
    stack: str, name: str, service: dict[str, Any], rendered: dict[str, Any], swarm: SwarmSnapshot
) -> list[Problem]:
    """A local named volume keeps its data on one node: more than one replica each has its
    own, and a service its constraints let run on several nodes may start on one where its
    volume is empty. Warnings, naming where the data is and the constraint that pins it."""
    deploy = service.get("deploy") or {}
    if deploy.get("mode") == "global":
        return []
    replicas = int(deploy.get("replicas", 1) or 0)
    constraints = list((deploy.get("placement") or {}).get("constraints") or [])
    allowed = [n for n in swarm.nodes if satisfies(n, constraints)]
    problems = []
    for volume in local_volumes(stack, service, rendered):
        if replicas > 1:
            problems.append(
                Problem(
                    name,
                    "volumes",
                    f"{replicas} replicas on local volume {volume}: each replica has its own "
                    "data (use shared storage, or one replica)",
                    False,
                )
            )
        if len(allowed) > 1:
            where = swarm.volume_nodes.get(volume) or []
            on = f"its data is on {', '.join(where)}" if where else "it has no data yet"
            node = where[0] if len(where) == 1 else "NODE"
            problems.append(
                Problem(
                    name,
                    "deploy.placement.constraints",
                    f"local volume {volume}, and {len(allowed)} nodes its constraints allow: "
                    f"{on}; pin it (node.hostname == {node}, or a label only that node has) "
                    "or use shared storage",
                    False,
                )
            )
    return problems


def _nfs_without_server(rendered: dict[str, Any]) -> list[Problem]:
    """An NFS volume on the local driver names its server in ``o: addr=...``: without it,
    every node mounts nothing, and the first task fails to start (or writes locally)."""
    problems = []
    for key, spec in sorted((rendered.get("volumes") or {}).items()):
        opts = (spec or {}).get("driver_opts") or {}
        kind = str(opts.get("type") or "")
        if kind.startswith("nfs") and "addr=" not in str(opts.get("o") or ""):
            problems.append(
                Problem(
                    "",
                    f"volumes.{key}.driver_opts",
                    f"an {kind} volume without addr= in o: every node needs the server "
                    '(o: "addr=10.0.0.5,rw", device: ":/export/path")',
                    True,
                )
            )
    return problems


def local_volumes(stack: str, service: dict[str, Any], rendered: dict[str, Any]) -> list[str]:
    """The named volumes the service mounts whose data stays on a node (the local driver
    without a shared ``type``), by the name swarm gives them."""
    declared = rendered.get("volumes") or {}
    out = []
    for kind, source in volume_sources(service):
        spec = declared.get(source)
        if kind != "volume" or not source or not isinstance(spec, dict | type(None)):
            continue
        spec = spec or {}
        driver = spec.get("driver") or "local"
        shared = str((spec.get("driver_opts") or {}).get("type") or "") in SHARED_TYPES
        if driver != "local" or shared:
            continue
        if spec.get("external"):
            out.append(str(spec.get("name") or source))
        else:
            out.append(str(spec.get("name") or f"{stack}_{source}"))
    return out


def _placement(name: str, service: dict[str, Any], nodes: list[dict[str, Any]]) -> list[Problem]:
    placement = (service.get("deploy") or {}).get("placement") or {}
    constraints = placement.get("constraints") or []
    unplaced = unplaceable(nodes, constraints) if constraints and nodes else ""
    return [Problem(name, "deploy.placement.constraints", unplaced, True)] if unplaced else []
