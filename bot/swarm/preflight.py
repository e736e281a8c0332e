"""Before a deploy: what is wrong with a stack file, and what a deploy would change.

Both work on the file as the docker CLI renders it (``docker stack config``, CLI 23+), so
interpolation and merging are the CLI's own, and on a snapshot of the swarm taken through
the SDK. Pure functions: the worker fetches, these judge.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bot.core.ids import image_tag
from bot.core.wire import ChangeData
from bot.swarm.placement import unplaceable

HASH_LABEL = "swarmbot.file-hash"  # the whole service definition
TASK_HASH_LABEL = "swarmbot.task-hash"  # the parts that make swarm replace the tasks
REMOVED = "would be removed"  # a diff's change for a running service the file lost
# The keys of a service that swarm changes in place: everything else is the task template
# or the endpoint, and changing it replaces every task (swarmkit's IsTaskDirty).
IN_PLACE_DEPLOY_KEYS = ("replicas", "labels", "update_config", "rollback_config")
# Labels that swarmbot and `docker stack deploy` set themselves: never a user's change.
OWN_LABEL_PREFIXES = ("swarmbot.", "com.docker.stack.")
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
    problems = unset_variables(raw, variables)
    try:
        raw_doc = yaml.safe_load(raw) or {}
    except yaml.YAMLError:
        raw_doc = {}
    raw_services = raw_doc.get("services") or {}
    services = rendered.get("services") or {}
    for kind, existing in (
        ("networks", swarm.networks),
        ("secrets", swarm.secrets),
        ("configs", swarm.configs),
        ("volumes", swarm.volumes),
    ):
        for key, spec in (rendered.get(kind) or {}).items():
            spec = spec or {}
            if spec.get("external"):
                name = spec.get("name") or key
                if name not in existing:
                    problems.append(
                        Problem(
                            "",
                            f"{kind}.{key}",
                            f"external {kind[:-1]} {name} does not exist",
                            True,
                        )
                    )
    for name, service in sorted(services.items()):
        for key, why in IGNORED_KEYS.items():
            if key in service:
                problems.append(
                    Problem(name, key, f"ignored by docker stack deploy: {why}", False)
                )
        image = str(service.get("image") or "")
        tagless = image.split("@", 1)[0].rsplit("/", 1)[-1]
        if not image:
            problems.append(Problem(name, "image", "no image", True))
        elif "@" not in image and ":" not in tagless:
            problems.append(Problem(name, "image", f"{image} has no tag: pin one", False))
        elif image.endswith(":latest"):
            problems.append(Problem(name, "image", f"{image} is on :latest: pin a version", False))
        for kind, source in volume_sources(raw_services.get(name) or {}):
            if kind == "bind" and source.startswith(".") and not (file_dir / source).exists():
                problems.append(
                    Problem(name, "volumes", f"bind mount source {source} does not exist", True)
                )
        constraints = ((service.get("deploy") or {}).get("placement") or {}).get(
            "constraints"
        ) or []
        unplaced = unplaceable(swarm.nodes, constraints) if constraints and swarm.nodes else ""
        if unplaced:
            problems.append(Problem(name, "deploy.placement.constraints", unplaced, True))
    return problems


# -- what a deploy would change ---------------------------------------------------------


def object_names(stack: str, rendered: dict[str, Any]) -> dict[tuple[str, str], str]:
    """Names for the stack's file-based configs and secrets, versioned by their content:
    ``<stack>_<key>-<sha256[:12]>``.

    Swarm configs and secrets are immutable: redeploying a stack after editing one of its
    files fails ("only updates to Labels are allowed") unless the object gets a new name.
    With the content in the name, an edited file becomes a new object, the services that
    use it are updated to it, and an unchanged file keeps its name. (Entries that set
    ``name:`` themselves, or are external, are the operator's and are left alone.)
    """
    out: dict[tuple[str, str], str] = {}
    for kind in ("configs", "secrets"):
        for key, spec in (rendered.get(kind) or {}).items():
            if not isinstance(spec, dict) or spec.get("name") or spec.get("external"):
                continue
            file = spec.get("file")
            if not file:
                continue
            try:
                digest = hashlib.sha256(Path(file).read_bytes()).hexdigest()[:12]
            except OSError:
                continue  # the pre-flight check reports the missing file
            out[(kind, key)] = f"{stack}_{key}-{digest}"
    return out


def service_hash(
    service: dict[str, Any], objects: dict[tuple[str, str], str] | None = None
) -> str:
    """A fingerprint of one rendered service definition, kept as a label on deploy. It
    covers the versioned names of the configs and secrets the service uses, so editing
    one of those files changes the fingerprint even though the service text did not."""
    used = {}
    for kind in ("configs", "secrets"):
        for ref in service.get(kind) or []:
            key = _source(ref)
            if objects and (kind, key) in objects:
                used[f"{kind}/{key}"] = objects[(kind, key)]
    body = {**service, "x-swarmbot-objects": used} if used else service
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:16]


def task_hash(service: dict[str, Any], objects: dict[tuple[str, str], str] | None = None) -> str:
    """The fingerprint of what swarm runs in each task: the service less the settings
    it changes in place (replicas, service labels, update and rollback config)."""
    deploy = {
        k: v for k, v in (service.get("deploy") or {}).items() if k not in IN_PLACE_DEPLOY_KEYS
    }
    return service_hash({**service, "deploy": deploy}, objects)


def _user_labels(value: Any) -> dict[str, str]:
    """Labels as a dict, without the ones swarmbot and the stack deploy set themselves."""
    return {k: v for k, v in _env(value).items() if not k.startswith(OWN_LABEL_PREFIXES)}


def _argv(value: Any) -> list[str]:
    """A compose command or entrypoint as the Engine keeps it (a string is split, as the
    docker CLI splits it)."""
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    return [str(v) for v in value]


def _env(value: Any) -> dict[str, str]:
    if isinstance(value, dict):
        return {k: "" if v is None else str(v) for k, v in value.items()}
    out = {}
    for item in value or []:
        key, _, val = str(item).partition("=")
        out[key] = val
    return out


def _ports(ports: list[Any]) -> set[str]:
    out = set()
    for p in ports or []:
        if isinstance(p, dict) and "TargetPort" in p:  # the Engine API's form
            published, target = p.get("PublishedPort", ""), p["TargetPort"]
            proto, mode = p.get("Protocol", "tcp"), p.get("PublishMode", "ingress")
        elif isinstance(p, dict):  # compose's long form, as `docker stack config` renders it
            published, target = p.get("published", ""), p.get("target")
            proto, mode = p.get("protocol", "tcp"), p.get("mode", "ingress")
        else:
            out.add(str(p))
            continue
        out.add(f"{published}:{target}/{proto} {mode}")
    return out


def diff(stack: str, rendered: dict[str, Any], current: list[dict[str, Any]]) -> list[ChangeData]:
    """Per service: what a deploy would change. Environment values are never included."""
    running = {s["Spec"]["Name"]: s for s in current}
    objects = object_names(stack, rendered)
    changes: list[ChangeData] = []
    for short, want in sorted((rendered.get("services") or {}).items()):
        name = f"{stack}_{short}"
        have = running.pop(name, None)
        if have is None:
            changes.append(
                {
                    "service": name,
                    "change": "new",
                    "details": [f"image {want.get('image')}"],
                    "restarts": True,
                }
            )
            continue
        spec = have["Spec"]
        container = spec["TaskTemplate"].get("ContainerSpec") or {}
        details: list[str] = []
        in_place: list[str] = []  # changes swarm makes without replacing tasks
        old_image = image_tag(spec)
        if old_image != str(want.get("image", "")):
            details.append(f"image {old_image} -> {want.get('image')}")
        deploy = want.get("deploy") or {}
        mode = spec.get("Mode") or {}
        if "Replicated" in mode and deploy.get("mode", "replicated") == "replicated":
            old, new = mode["Replicated"].get("Replicas", 1), deploy.get("replicas", 1)
            if old != new:
                in_place.append(f"replicas {old} -> {new}")
        old_env, new_env = _env(container.get("Env")), _env(want.get("environment"))
        for label, keys in (
            ("added", new_env.keys() - old_env.keys()),
            ("removed", old_env.keys() - new_env.keys()),
            ("changed", {k for k in new_env.keys() & old_env.keys() if new_env[k] != old_env[k]}),
        ):
            if keys:
                details.append(f"environment {label}: {', '.join(sorted(keys))}")
        old_ports = _ports((spec.get("EndpointSpec") or {}).get("Ports") or [])
        new_ports = _ports(want.get("ports") or [])
        if old_ports != new_ports:
            before, after = ", ".join(sorted(old_ports)), ", ".join(sorted(new_ports))
            details.append(f"ports {before or 'none'} -> {after or 'none'}")
        old_mounts = sorted(
            f"{m.get('Source', '')}:{m.get('Target')}" for m in container.get("Mounts") or []
        )
        new_mounts = sorted(
            f"{_mount_source(stack, rendered, v)}:{v.get('target')}"
            for v in want.get("volumes") or []
            if isinstance(v, dict)
        )
        if old_mounts != new_mounts:
            details.append("mounts changed")
        old_constraints = sorted(
            (spec["TaskTemplate"].get("Placement") or {}).get("Constraints") or []
        )
        new_constraints = sorted((deploy.get("placement") or {}).get("constraints") or [])
        if old_constraints != new_constraints:
            details.append(
                f"constraints {old_constraints or 'none'} -> {new_constraints or 'none'}"
            )
        old_objects = sorted(
            ref.get("ConfigName", "")
            for ref in spec["TaskTemplate"].get("ContainerSpec", {}).get("Configs") or []
        ) + sorted(
            ref.get("SecretName", "")
            for ref in spec["TaskTemplate"].get("ContainerSpec", {}).get("Secrets") or []
        )
        changed_files = [
            key
            for (kind, key), versioned in objects.items()
            if _uses(want, kind, key) and versioned not in old_objects
        ]
        if changed_files:  # contents are never shown: a secret's would be a leak
            details.append(f"configs/secrets changed: {', '.join(sorted(changed_files))}")
        if _argv(want.get("command")) != list(container.get("Args") or []):
            details.append("command changed")
        if _argv(want.get("entrypoint")) != list(container.get("Command") or []):
            details.append("entrypoint changed")
        for where, old_labels, new_labels, replaces in (
            ("labels", spec.get("Labels"), deploy.get("labels"), False),
            ("container labels", container.get("Labels"), want.get("labels"), True),
        ):
            old_l, new_l = _user_labels(old_labels), _user_labels(new_labels)
            keys = {k for k in old_l.keys() | new_l.keys() if old_l.get(k) != new_l.get(k)}
            if keys:
                (details if replaces else in_place).append(
                    f"{where} changed: {', '.join(sorted(keys))}"
                )
        # What the comparisons above do not cover (resources, healthcheck, restart policy,
        # networks, ...) is caught by the fingerprints of the last deploy by swarmbot. A
        # service deployed without swarmbot has none: its own labels alone are no change.
        labels = spec.get("Labels") or {}
        whole = service_hash(want, objects)
        if TASK_HASH_LABEL in labels:
            tasks_were, tasks_will = labels[TASK_HASH_LABEL], task_hash(want, objects)
        else:  # deployed by a swarmbot that kept only the whole fingerprint
            tasks_were, tasks_will = labels.get(HASH_LABEL, ""), whole
        if not details and tasks_were and tasks_were != tasks_will:
            details.append("other settings changed (resources, healthcheck, networks, …)")
        if not (details or in_place) and labels.get(HASH_LABEL, whole) != whole:
            in_place.append("other service settings changed (update or rollback config, …)")
        if details or in_place:
            changes.append(
                {
                    "service": name,
                    "change": "changed",
                    "details": details + in_place,
                    "restarts": bool(details),
                }
            )
    for name in sorted(running):
        changes.append(
            {
                "service": name,
                "change": REMOVED,
                "restarts": False,
                "details": [
                    "not in the file: `!deploy --prune` removes it (its volumes stay); "
                    "a plain deploy leaves it running"
                ],
            }
        )
    return changes


def _mount_source(stack: str, rendered: dict[str, Any], volume: dict[str, Any]) -> str:
    """A rendered volume entry's source as the Engine shows it: bind paths as they are,
    stack volumes prefixed with the stack name unless external or named."""
    source = volume.get("source")
    if volume.get("type") == "bind":
        return str(source)
    spec = (rendered.get("volumes") or {}).get(source or "") or {}
    if spec.get("external"):
        return spec.get("name") or str(source)
    return spec.get("name") or f"{stack}_{source}"


def _uses(service: dict[str, Any], kind: str, key: str) -> bool:
    return any(_source(ref) == key for ref in service.get(kind) or [])


def _source(ref: Any) -> Any:
    """A service's config or secret reference, short (``name``) or long (``source: name``)."""
    return ref.get("source") if isinstance(ref, dict) else ref


def hash_override(
    stack: str, rendered: dict[str, Any], labels: dict[str, str] | None = None
) -> str:
    """A compose file merged in on deploy: each service's fingerprint label (and
    ``labels``, such as the commit deployed), and the content-versioned names of the
    stack's file-based configs and secrets."""
    objects = object_names(stack, rendered)
    services = {
        name: {
            "deploy": {
                "labels": {
                    HASH_LABEL: service_hash(service, objects),
                    TASK_HASH_LABEL: task_hash(service, objects),
                    **(labels or {}),
                }
            }
        }
        for name, service in (rendered.get("services") or {}).items()
    }
    doc: dict[str, Any] = {"version": str(rendered.get("version", "3.8")), "services": services}
    for (kind, key), name in objects.items():
        # The file again, absolute: the CLI reads each compose file's entry on its own.
        file = str(rendered[kind][key]["file"])
        doc.setdefault(kind, {})[key] = {"name": name, "file": file}
    return yaml.safe_dump(doc)


# -- the order of `!deploy all` -----------------------------------------------------------


class OrderError(Exception):
    """Stacks that need each other: no order works."""


def needs(stack: str, raw: str, stacks: set[str]) -> set[str]:
    """The stacks whose networks or volumes this stack uses as external (``ingress_dev`` is
    stack ``ingress``'s network ``dev``)."""
    try:
        doc = yaml.safe_load(raw) or {}
    except yaml.YAMLError:
        return set()
    out = set()
    for kind in ("networks", "volumes"):
        for key, spec in (doc.get(kind) or {}).items():
            if isinstance(spec, dict) and spec.get("external"):
                name = str(spec.get("name") or key)
                owner = name.split("_", 1)[0]
                if "_" in name and owner in stacks and owner != stack:
                    out.add(owner)
    return out


def deploy_needs(files: dict[str, Path], first: tuple[str, ...]) -> dict[str, set[str]]:
    """What each stack waits for in ``!deploy all``: the stacks whose networks or volumes
    it uses as external, and, for every stack not in ``first``, the ``first`` stacks
    (unless that ``first`` stack itself needs it: the files win). The ``first`` stacks
    wait for nothing but their files' needs: they go together, before the rest."""
    names = set(files)
    deps = {
        name: needs(name, path.read_text(encoding="utf-8"), names) for name, path in files.items()
    }
    below = {name: _closure(name, deps) for name in names}
    present = [f for f in first if f in names]
    for name in names - set(present):
        deps[name] |= {f for f in present if name not in below[f]}
    return deps


def _closure(name: str, deps: dict[str, set[str]]) -> set[str]:
    """Every stack ``name`` needs, directly or through others."""
    seen: set[str] = set()
    todo = list(deps[name])
    while todo:
        dep = todo.pop()
        if dep not in seen:
            seen.add(dep)
            todo.extend(deps.get(dep, ()))
    return seen


def deploy_order(files: dict[str, Path], first: tuple[str, ...]) -> list[str]:
    """Every stack after the stacks it needs; among those free to go, the configured
    ``first`` ones in their order, then alphabetical. The order replies list stacks in."""
    return order_of(deploy_needs(files, first), first)


def order_of(deps: dict[str, set[str]], first: tuple[str, ...]) -> list[str]:
    """``deploy_order`` from needs already worked out (``deploy_needs``)."""
    names = set(deps)
    rank = {name: (first.index(name) if name in first else len(first), name) for name in names}
    order: list[str] = []
    while len(order) < len(names):
        ready = [n for n in names - set(order) if deps[n] <= set(order)]
        if not ready:
            stuck = sorted(names - set(order))
            raise OrderError(f"these stacks need each other: {', '.join(stuck)}")
        order.append(min(ready, key=rank.__getitem__))
    return order
