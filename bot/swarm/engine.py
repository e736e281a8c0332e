"""Swarm operations through the Docker SDK. Only the worker imports this module.

Every read is one Engine API call whatever the size of the swarm (``GET /services`` with
``status=true`` gives running/desired counts for all services at once), and the wait loop
makes three calls per poll for a whole stack (services, up-to-date tasks, nodes) rather than
three per service, so its cost does not grow with the number of services or old tasks.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from typing import Any

import docker
import docker.errors

from bot.core.ids import STACK_LABEL, image_tag, stack_of
from bot.core.whereabouts import Whereabouts
from bot.core.wire import OutcomeData, OutcomeState
from bot.swarm.convergence import (
    Assessment,
    assess,
    desired_replicas,
    failing_task,
    mode_name,
    parse_time,
)
from bot.swarm.nodes import node_rows
from bot.swarm.preflight import SwarmSnapshot

API_VERSION = "1.41"
DEFAULT_SOCKET = "unix:///var/run/docker.sock"  # what docker.from_env reaches without DOCKER_HOST
POLL_SECONDS = 0.25
DEFAULT_MONITOR_SECONDS = 5.0


# A service's update state as !services shows it (swarm's words, for a person).
UPDATE_STATES = {
    "updating": "updating",
    "rollback_started": "rolling back",
    "paused": "update paused",
    "rollback_paused": "rollback paused",
}


class Swarm:
    def __init__(self, client: docker.DockerClient) -> None:
        self._client = client
        self._api = client.api

    @classmethod
    def from_env(cls, timeout: int = 30) -> Swarm:
        """A client that connects on first use: a worker started while Docker is down
        keeps running and answers "Docker is not reachable" until it is back. API 1.41
        (Engine 20.10) is the oldest with service status counts; newer engines accept it."""
        return cls(docker.from_env(version=API_VERSION, timeout=timeout))

    def client(self) -> docker.DockerClient:
        return self._client

    def ping(self) -> bool:
        return bool(self._api.ping())

    def whereabouts(self, swarm_name: str = "") -> Whereabouts:
        """The daemon this client reaches, the node it is and the swarm it belongs to."""
        info: dict[str, Any] = self._api.info()
        swarm = info.get("Swarm") or {}
        return Whereabouts(
            daemon=os.environ.get("DOCKER_HOST") or DEFAULT_SOCKET,
            node_id=str(swarm.get("NodeID") or ""),
            hostname=str(info.get("Name") or ""),
            manager=bool(swarm.get("ControlAvailable")),
            swarm_id=str((swarm.get("Cluster") or {}).get("ID") or ""),
            swarm_name=swarm_name,
        )

    def service_named(self, name: str) -> dict[str, Any] | None:
        """The service of exactly this name, or None: one inspect instead of listing every
        service (Docker's inspect also takes IDs and ID prefixes: only an exact name
        counts here)."""
        if not name or "/" in name:
            return None
        try:
            service: dict[str, Any] = self._api.inspect_service(name)
        except docker.errors.NotFound:
            return None
        return service if (service.get("Spec") or {}).get("Name") == name else None

    def services(self, stack: str | None = None, status: bool = False) -> list[dict[str, Any]]:
        filters = {"label": f"{STACK_LABEL}={stack}"} if stack else None
        services: list[dict[str, Any]] = self._api.services(filters=filters, status=status)
        return services

    def snapshot(self) -> SwarmSnapshot:
        """What a pre-flight check compares a stack file with: five list calls."""
        return SwarmSnapshot(
            networks={n["Name"] for n in self._api.networks()},
            secrets={s["Spec"]["Name"] for s in self._api.secrets()},
            configs={c["Spec"]["Name"] for c in self._api.configs()},
            volumes={v["Name"] for v in self._api.volumes().get("Volumes") or []},
            nodes=self._api.nodes(),
        )

    def unused_versions(self, stack: str, current: set[str]) -> list[tuple[str, str, str]]:
        """(kind, ID, name) of the configs and secrets swarmbot versioned for ``stack``
        (``<stack>_<key>-<12 hex>``, labelled with the stack) that no service in the swarm
        uses and that are not ``current`` (the names this deploy made)."""
        pattern = re.compile(rf"^{re.escape(stack)}_[A-Za-z0-9._-]+-[0-9a-f]{{12}}$")
        label = {"label": f"{STACK_LABEL}={stack}"}
        found = [("config", c) for c in self._api.configs(filters=label)]
        found += [("secret", s) for s in self._api.secrets(filters=label)]
        old = [
            (kind, obj["ID"], obj["Spec"]["Name"])
            for kind, obj in found
            if pattern.match(obj["Spec"]["Name"]) and obj["Spec"]["Name"] not in current
        ]
        if not old:
            return []  # the usual deploy: no services listed
        used: set[str] = set()
        for service in self._api.services():
            container = (service["Spec"].get("TaskTemplate") or {}).get("ContainerSpec") or {}
            used |= {c.get("ConfigName", "") for c in container.get("Configs") or []}
            used |= {s.get("SecretName", "") for s in container.get("Secrets") or []}
        return sorted(o for o in old if o[2] not in used)

    def remove_object(self, kind: str, object_id: str) -> None:
        if kind == "config":
            self._api.remove_config(object_id)
        else:
            self._api.remove_secret(object_id)

    def stack_volumes(self, stack: str) -> list[str]:
        """Volumes the stack created (they carry its namespace label); they outlive it."""
        volumes = (
            self._api.volumes(filters={"label": f"{STACK_LABEL}={stack}"}).get("Volumes") or []
        )
        return sorted(v["Name"] for v in volumes)

    def service_rows(self, stack: str | None = None) -> list[dict[str, Any]]:
        """``!services``: one API call for the whole list, and one more per service short
        of its replicas with no update running (failing, or only being scheduled?)."""
        rows = []
        now = time.time()
        for svc in self.services(stack, status=True):
            status = svc.get("ServiceStatus") or {}
            desired = desired_replicas(svc)
            running = int(status.get("RunningTasks", 0))
            want = int(status.get("DesiredTasks", desired or 0))
            state = UPDATE_STATES.get((svc.get("UpdateStatus") or {}).get("State", ""), "")
            if not state and running > want:
                state = "scaling down"
            elif not state and running < want:
                tasks = self._api.tasks(filters={"service": svc["ID"]})
                state = "unhealthy" if failing_task(tasks, now) is not None else "starting"
            rows.append(
                {
                    "name": svc["Spec"]["Name"],
                    "stack": stack_of(svc["Spec"].get("Labels")),
                    "mode": mode_name(svc),
                    "running": running,
                    "desired": want,
                    "state": state or "ok",
                    "image": image_tag(svc["Spec"]),
                    "updated": parse_time(svc.get("UpdatedAt")),
                }
            )
        return sorted(rows, key=lambda r: r["name"])

    def nodes(self) -> list[dict[str, Any]]:
        return self._api.nodes()

    def tasks(self, **filters: str) -> list[dict[str, Any]]:
        """Tasks by Engine API filters (``service``, ``node``, ``desired-state``)."""
        tasks: list[dict[str, Any]] = self._api.tasks(filters=filters)
        return tasks

    def node_rows(self) -> list[dict[str, Any]]:
        """``!nodes``: two API calls, whatever the size of the swarm."""
        return node_rows(self._api.nodes(), self._api.tasks(filters={"desired-state": "running"}))

    def set_availability(self, node_id: str, availability: str) -> None:
        """``docker node update --availability``; the rest of the node's spec as it is."""
        node = self._api.inspect_node(node_id)
        spec = dict(node["Spec"])
        spec["Availability"] = availability
        self._api.update_node(node_id, node["Version"]["Index"], spec)  # type: ignore[arg-type]

    def set_node_labels(self, node_id: str, labels: dict[str, str]) -> None:
        """``docker node update --label-add/--label-rm``: the node's labels become
        ``labels``; the rest of its spec as it is."""
        node = self._api.inspect_node(node_id)
        spec = dict(node["Spec"])
        spec["Labels"] = labels
        self._api.update_node(node_id, node["Version"]["Index"], spec)  # type: ignore[arg-type]

    def task_rows(self, service_id: str) -> list[dict[str, Any]]:
        """``!ps``: one call for the tasks, one for node names."""
        nodes = {n["ID"]: n["Description"]["Hostname"] for n in self._api.nodes()}
        rows = []
        for task in self._api.tasks(filters={"service": service_id}):
            status = task.get("Status", {})
            rows.append(
                {
                    "id": task["ID"][:12],
                    "slot": task.get("Slot") or 0,
                    "node": nodes.get(task.get("NodeID", ""), task.get("NodeID", "")[:12] or "-"),
                    "desired": task.get("DesiredState", ""),
                    "state": status.get("State", ""),
                    "since": parse_time(status.get("Timestamp")),
                    "error": status.get("Err", ""),
                    "exit_code": (status.get("ContainerStatus") or {}).get("ExitCode"),
                }
            )
        return sorted(rows, key=lambda r: (r["slot"], -r["since"]))

    def logs(self, service_id: str, lines: int) -> list[str]:
        """The last ``lines`` lines the service's tasks wrote (stdout and stderr)."""
        raw = self._api.service_logs(
            service_id, stdout=True, stderr=True, tail=str(lines), timestamps=False
        )
        data = raw if isinstance(raw, bytes) else b"".join(raw)
        return data.decode("utf-8", "replace").splitlines()[-lines:]

    def service_env(self, service_id: str) -> list[str]:
        spec = (
            self._api.inspect_service(service_id)["Spec"]["TaskTemplate"].get("ContainerSpec")
            or {}
        )
        return list(spec.get("Env") or [])

    def force_update(self, service_id: str) -> None:
        """``docker service update --force``: ForceUpdate + 1 on the current spec."""
        self._client.services.get(service_id).force_update()

    def update_service(self, service_id: str, **changes: Any) -> None:
        """Change the named parts of a service's spec (the Engine API's own names, e.g.
        ``mode={"Replicated": {"Replicas": 3}}``) and keep the rest: the current spec is
        fetched at its current version, so a concurrent change fails instead of being lost."""
        current = self._api.inspect_service(service_id)
        self._api.update_service(
            service_id, current["Version"]["Index"], fetch_current_spec=True, **changes
        )

    def watch(
        self,
        service_ids: list[str],
        since: float,
        deadline: float,
        on_progress: Callable[[list[Assessment]], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        rollback: bool = False,
    ) -> list[OutcomeData]:
        """Wait until every service has converged and stayed so for its monitor window,
        has failed, or the deadline (a ``clock`` time) passes. All services are watched
        together, so a stack takes as long as its slowest service, not the sum.
        """
        if not service_ids:
            return []  # an empty id filter would match every service
        watch = _Watch(clock(), since, rollback)
        while True:
            pending = [sid for sid in service_ids if sid not in watch.done]
            seen = self._look(pending)
            now = clock()
            current = watch.look(seen, pending, now)
            if on_progress is not None:
                on_progress(sorted(current.values(), key=lambda a: a.name))
            if len(watch.done) == len(service_ids):
                break
            if now >= deadline:
                watch.time_out(current, now)
                break
            time.sleep(POLL_SECONDS)
        order = {sid: i for i, sid in enumerate(service_ids)}
        return [watch.done[sid] for sid in sorted(watch.done, key=order.__getitem__)]

    def _look(
        self, pending: list[str]
    ) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]], set[str]]:
        """The services still watched, their up-to-date tasks by service, and the nodes
        that are down: three API calls, whatever the number of services."""
        services = self._api.services(filters={"id": pending}, status=True)
        tasks = self._api.tasks(filters={"service": pending, "_up-to-date": "true"})
        down = {n["ID"] for n in self._api.nodes() if n.get("Status", {}).get("State") == "down"}
        by_service: dict[str, list[dict[str, Any]]] = {}
        for task in tasks:
            by_service.setdefault(task["ServiceID"], []).append(task)
        return services, by_service, down


class _Watch:
    """The state of one ``Swarm.watch``: outcomes so far, and since when each service has
    looked converged (it must stay so for its update monitor window)."""

    def __init__(self, started: float, since: float, rollback: bool) -> None:
        self.started, self.since, self.rollback = started, since, rollback
        self.done: dict[str, OutcomeData] = {}
        self.converged_at: dict[str, float] = {}
        self.monitor: dict[str, float] = {}

    def look(
        self,
        seen: tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]], set[str]],
        pending: list[str],
        now: float,
    ) -> dict[str, Assessment]:
        services, by_service, down = seen
        current: dict[str, Assessment] = {}
        for svc in services:
            sid = svc["ID"]
            if sid not in pending:
                continue  # an id filter matches by prefix
            a = current[sid] = assess(
                svc, by_service.get(sid, []), down, self.since, self.rollback
            )
            if sid not in self.monitor:
                ns = (svc["Spec"].get("UpdateConfig") or {}).get("Monitor")
                self.monitor[sid] = ns / 1e9 if ns else DEFAULT_MONITOR_SECONDS
            self._judge(sid, a, now)
        for sid in set(pending) - set(current):
            self.done[sid] = OutcomeData(
                service=sid,
                state="failed",
                running=0,
                desired=0,
                reason="service was removed while waiting",
                seconds=0.0,
            )
        return current

    def _judge(self, sid: str, a: Assessment, now: float) -> None:
        if a.state == "converged":
            first = self.converged_at.setdefault(sid, now)
            if a.desired == 0 or now - first >= self.monitor[sid]:
                self.done[sid] = _outcome(a, a.state, a.reason, now - self.started)
        elif a.state != "converging":
            self.done[sid] = _outcome(a, a.state, a.reason, now - self.started)
        else:
            self.converged_at.pop(sid, None)

    def time_out(self, current: dict[str, Assessment], now: float) -> None:
        for sid, a in current.items():
            if sid not in self.done:
                reason = a.reason or "not all replicas running"
                self.done[sid] = _outcome(a, "timeout", reason, now - self.started)


def _outcome(a: Assessment, state: OutcomeState, reason: str, seconds: float) -> OutcomeData:
    """How watching one service ended: the payload the deploy report carries as it is."""
    return OutcomeData(
        service=a.name,
        state=state,
        running=a.running,
        desired=a.desired,
        reason=reason,
        seconds=round(seconds, 2),
    )
