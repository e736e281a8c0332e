"""What a deploy would change, per service: the stack file as the CLI renders it compared
with the services running. Environment values and file contents are never shown (a secret's
would be a leak): only which keys and files changed.

Each aspect (image, replicas, environment, ports, mounts, ...) is one small comparison;
what none of them covers is caught by the fingerprints the last deploy left (``hashes``).
A change is either one swarm makes in place (replicas, service labels, update config) or
one that replaces every task; the answer says which.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from typing import Any

from bot.core.ids import image_tag
from bot.core.wire import ChangeData
from bot.swarm.preflight.hashes import (
    HASH_LABEL,
    TASK_HASH_LABEL,
    object_names,
    service_hash,
    source_of,
    task_hash,
)

REMOVED = "would be removed"  # a diff's change for a running service the file lost
# Labels that swarmbot and `docker stack deploy` set themselves: never a user's change.
OWN_LABEL_PREFIXES = ("swarmbot.", "com.docker.stack.")

Objects = dict[tuple[str, str], str]


class Compared:
    """One running service beside what the file wants, with the changes found so far."""

    def __init__(
        self,
        stack: str,
        rendered: dict[str, Any],
        objects: Objects,
        want: dict[str, Any],
        have: dict[str, Any],
    ) -> None:
        self.stack, self.rendered, self.objects = stack, rendered, objects
        self.want = want
        self.spec = have["Spec"]
        self.task = self.spec.get("TaskTemplate") or {}
        self.container = self.task.get("ContainerSpec") or {}
        self.deploy = want.get("deploy") or {}
        self.details: list[str] = []  # changes that replace every task
        self.in_place: list[str] = []  # changes swarm makes without replacing tasks


def diff(stack: str, rendered: dict[str, Any], current: list[dict[str, Any]]) -> list[ChangeData]:
    """Per service: what a deploy would change."""
    running = {s["Spec"]["Name"]: s for s in current}
    objects = object_names(stack, rendered)
    changes: list[ChangeData] = []
    for short, want in sorted((rendered.get("services") or {}).items()):
        name = f"{stack}_{short}"
        have = running.pop(name, None)
        if have is None:
            new: ChangeData = {
                "service": name,
                "change": "new",
                "details": [f"image {want.get('image')}"],
                "restarts": True,
            }
            changes.append(new)
            continue
        seen = Compared(stack, rendered, objects, want, have)
        for aspect in ASPECTS:
            aspect(seen)
        if seen.details or seen.in_place:
            changed: ChangeData = {
                "service": name,
                "change": "changed",
                "details": seen.details + seen.in_place,
                "restarts": bool(seen.details),
            }
            changes.append(changed)
    for name in sorted(running):
        gone: ChangeData = {
            "service": name,
            "change": REMOVED,
            "restarts": False,
            "details": [
                "not in the file: `!deploy --prune` removes it (its volumes stay); "
                "a plain deploy leaves it running"
            ],
        }
        changes.append(gone)
    return changes


def _image(c: Compared) -> None:
    old = image_tag(c.spec)
    if old != str(c.want.get("image", "")):
        c.details.append(f"image {old} -> {c.want.get('image')}")


def _replicas(c: Compared) -> None:
    mode = c.spec.get("Mode") or {}
    if "Replicated" in mode and c.deploy.get("mode", "replicated") == "replicated":
        old, new = mode["Replicated"].get("Replicas", 1), c.deploy.get("replicas", 1)
        if old != new:
            c.in_place.append(f"replicas {old} -> {new}")


def _environment(c: Compared) -> None:
    old, new = env_dict(c.container.get("Env")), env_dict(c.want.get("environment"))
    for label, keys in (
        ("added", new.keys() - old.keys()),
        ("removed", old.keys() - new.keys()),
        ("changed", {k for k in new.keys() & old.keys() if new[k] != old[k]}),
    ):
        if keys:
            c.details.append(f"environment {label}: {', '.join(sorted(keys))}")


def _ports(c: Compared) -> None:
    old = port_set((c.spec.get("EndpointSpec") or {}).get("Ports") or [])
    new = port_set(c.want.get("ports") or [])
    if old != new:
        before, after = ", ".join(sorted(old)), ", ".join(sorted(new))
        c.details.append(f"ports {before or 'none'} -> {after or 'none'}")


def _mounts(c: Compared) -> None:
    old = sorted(
        f"{m.get('Source', '')}:{m.get('Target')}" for m in c.container.get("Mounts") or []
    )
    new = sorted(
        f"{_mount_source(c.stack, c.rendered, v)}:{v.get('target')}"
        for v in c.want.get("volumes") or []
        if isinstance(v, dict)
    )
    if old != new:
        c.details.append("mounts changed")


def _constraints(c: Compared) -> None:
    old = sorted((c.task.get("Placement") or {}).get("Constraints") or [])
    new = sorted((c.deploy.get("placement") or {}).get("constraints") or [])
    if old != new:
        c.details.append(f"constraints {old or 'none'} -> {new or 'none'}")


def _files(c: Compared) -> None:
    """Configs and secrets from files: a new content is a new versioned name."""
    old = {ref.get("ConfigName", "") for ref in c.container.get("Configs") or []}
    old |= {ref.get("SecretName", "") for ref in c.container.get("Secrets") or []}
    changed = [
        key
        for (kind, key), versioned in c.objects.items()
        if _uses(c.want, kind, key) and versioned not in old
    ]
    if changed:  # contents are never shown: a secret's would be a leak
        c.details.append(f"configs/secrets changed: {', '.join(sorted(changed))}")


def _argv_changes(c: Compared) -> None:
    if argv(c.want.get("command")) != list(c.container.get("Args") or []):
        c.details.append("command changed")
    if argv(c.want.get("entrypoint")) != list(c.container.get("Command") or []):
        c.details.append("entrypoint changed")


def _labels(c: Compared) -> None:
    for where, old_labels, new_labels, replaces in (
        ("labels", c.spec.get("Labels"), c.deploy.get("labels"), False),
        ("container labels", c.container.get("Labels"), c.want.get("labels"), True),
    ):
        old, new = user_labels(old_labels), user_labels(new_labels)
        keys = {k for k in old.keys() | new.keys() if old.get(k) != new.get(k)}
        if keys:
            (c.details if replaces else c.in_place).append(
                f"{where} changed: {', '.join(sorted(keys))}"
            )


def _fingerprints(c: Compared) -> None:
    """What the comparisons above do not cover (resources, healthcheck, restart policy,
    networks, ...) is caught by the fingerprints of the last deploy by swarmbot. A service
    deployed without swarmbot has none: its own labels alone are no change."""
    labels = c.spec.get("Labels") or {}
    whole = service_hash(c.want, c.objects)
    if TASK_HASH_LABEL in labels:
        tasks_were, tasks_will = labels[TASK_HASH_LABEL], task_hash(c.want, c.objects)
    else:  # deployed by a swarmbot that kept only the whole fingerprint
        tasks_were, tasks_will = labels.get(HASH_LABEL, ""), whole
    if not c.details and tasks_were and tasks_were != tasks_will:
        c.details.append("other settings changed (resources, healthcheck, networks, …)")
    if not (c.details or c.in_place) and labels.get(HASH_LABEL, whole) != whole:
        c.in_place.append("other service settings changed (update or rollback config, …)")


# In the order an answer lists them; the fingerprints last (they speak when nothing else did).
ASPECTS: tuple[Callable[[Compared], None], ...] = (
    _image,
    _replicas,
    _environment,
    _ports,
    _mounts,
    _constraints,
    _files,
    _argv_changes,
    _labels,
    _fingerprints,
)


_ARROW = re.compile(r"^(?P<what>[a-z][a-z ]*?) (?P<old>.+) -> (?P<new>.+)$")
_SWAPPED = {"environment added": "environment removed", "environment removed": "environment added"}


def by_hand(change: ChangeData) -> str:
    """A diff read the other way round: what was changed by hand to make the service differ
    from its file (a diff says what a deploy, the undo, would do). ``environment removed:
    HELD`` in the diff is ``environment added: HELD`` by hand; ``image a -> b`` is ``image
    b -> a``; a service the file has and the swarm not was removed by hand."""
    if change["change"] == "new":
        return "removed"
    if change["change"] == REMOVED:
        return "created (it is not in the file)"
    out = []
    for detail in change["details"]:
        head, colon, rest = detail.partition(": ")
        arrow = _ARROW.match(detail)
        if colon and head in _SWAPPED:
            out.append(f"{_SWAPPED[head]}: {rest}")
        elif arrow:
            out.append(f"{arrow['what']} {arrow['new']} -> {arrow['old']}")
        else:
            out.append(detail)
    return "; ".join(out)


def user_labels(value: Any) -> dict[str, str]:
    """Labels as a dict, without the ones swarmbot and the stack deploy set themselves."""
    return {k: v for k, v in env_dict(value).items() if not k.startswith(OWN_LABEL_PREFIXES)}


def argv(value: Any) -> list[str]:
    """A compose command or entrypoint as the Engine keeps it (a string is split, as the
    docker CLI splits it)."""
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    return [str(v) for v in value]


def env_dict(value: Any) -> dict[str, str]:
    if isinstance(value, dict):
        return {k: "" if v is None else str(v) for k, v in value.items()}
    out = {}
    for item in value or []:
        key, _, val = str(item).partition("=")
        out[key] = val
    return out


def port_set(ports: list[Any]) -> set[str]:
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
    return any(source_of(ref) == key for ref in service.get(kind) or [])
