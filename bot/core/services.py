"""A service as the worker's code reads it: a small typed view over the Engine API's dict.

Raw lookups (``service["Spec"]["TaskTemplate"]["ContainerSpec"]["Mounts"]``) written at
every call site disagreed on the defaults of missing parts (a global service has no
``Replicated``, a service without mounts no ``Mounts``); here each part is read once, with
its default, and named as operators name it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.core.ids import image_tag, stack_of


@dataclass(frozen=True)
class Mount:
    kind: str  # volume, bind, tmpfs, npipe, cluster
    source: str  # the volume's name or the host path ("" for tmpfs)
    target: str  # where the container sees it
    read_only: bool


@dataclass(frozen=True)
class Port:
    published: int
    target: int
    protocol: str
    mode: str  # ingress (the routing mesh) or host


@dataclass(frozen=True)
class ServiceView:
    id: str
    name: str
    stack: str
    image: str  # as the stack file wrote it (the tag), not the pinned digest
    digest: str  # the digest swarm pinned (``sha256:...``), or "" if it runs a bare tag
    replicas: int | None  # None for a global service
    labels: Mapping[str, str]
    env: tuple[tuple[str, str], ...]  # (key, value), in the spec's order
    mounts: tuple[Mount, ...]
    constraints: tuple[str, ...]
    ports: tuple[Port, ...]
    update_config: Mapping[str, Any]
    rollback_config: Mapping[str, Any]
    has_previous: bool  # swarm kept the spec before the last update (``!rollback``)
    raw: Mapping[str, Any]  # the Engine API's dict, for what no field names

    @classmethod
    def of(cls, service: Mapping[str, Any]) -> ServiceView:
        spec = service.get("Spec") or {}
        task = spec.get("TaskTemplate") or {}
        container = task.get("ContainerSpec") or {}
        _, at, pinned = str(container.get("Image", "")).partition("@")
        replicated = (spec.get("Mode") or {}).get("Replicated")
        endpoint = (service.get("Endpoint") or {}).get("Spec") or spec.get("EndpointSpec") or {}
        return cls(
            id=str(service.get("ID", "")),
            name=str(spec.get("Name", "")),
            stack=stack_of(spec.get("Labels")),
            image=image_tag(spec),
            digest=pinned if at and pinned.startswith("sha256:") else "",
            replicas=int(replicated.get("Replicas", 1)) if replicated is not None else None,
            labels=dict(spec.get("Labels") or {}),
            env=tuple(_pair(e) for e in container.get("Env") or []),
            mounts=tuple(
                Mount(
                    kind=str(m.get("Type", "volume")),
                    source=str(m.get("Source", "")),
                    target=str(m.get("Target", "")),
                    read_only=bool(m.get("ReadOnly", False)),
                )
                for m in container.get("Mounts") or []
            ),
            constraints=tuple((task.get("Placement") or {}).get("Constraints") or []),
            ports=tuple(
                Port(
                    published=int(p.get("PublishedPort", 0)),
                    target=int(p.get("TargetPort", 0)),
                    protocol=str(p.get("Protocol", "tcp")),
                    mode=str(p.get("PublishMode", "ingress")),
                )
                for p in endpoint.get("Ports") or []
            ),
            update_config=dict(spec.get("UpdateConfig") or {}),
            rollback_config=dict(spec.get("RollbackConfig") or {}),
            has_previous=bool(service.get("PreviousSpec")),
            raw=service,
        )

    @property
    def is_global(self) -> bool:
        return self.replicas is None

    @property
    def volumes(self) -> list[str]:
        """The named volumes it mounts (bind mounts are host paths, not volumes)."""
        return sorted({m.source for m in self.mounts if m.kind == "volume" and m.source})


def _pair(item: str) -> tuple[str, str]:
    key, _, value = str(item).partition("=")
    return key, value
