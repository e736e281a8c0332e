"""Fingerprints of what a deploy puts in place, kept as labels on each service, and the
content-versioned names of a stack's file-based configs and secrets: what lets ``!diff``
see a change the Engine's spec does not show, and a redeploy replace an edited config.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

HASH_LABEL = "swarmbot.file-hash"  # the whole service definition
TASK_HASH_LABEL = "swarmbot.task-hash"  # the parts that make swarm replace the tasks
# The keys of a service that swarm changes in place: everything else is the task template
# or the endpoint, and changing it replaces every task (swarmkit's IsTaskDirty).
IN_PLACE_DEPLOY_KEYS = ("replicas", "labels", "update_config", "rollback_config")


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
            key = source_of(ref)
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


def source_of(ref: Any) -> Any:
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
