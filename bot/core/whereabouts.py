"""Which swarm a worker manages: the daemon its Docker socket reaches, the node that daemon
is, and the swarm that node belongs to. A socket mounted from the wrong daemon once had a
worker manage another swarm on the same host, healthy and silent; every answer that says
where it acts (``!ping``, ``/healthz``, the worker's start) reads this."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Whereabouts:
    daemon: str  # how the worker reaches it: unix:///var/run/docker.sock, tcp://...
    node_id: str
    hostname: str
    manager: bool
    swarm_id: str  # "" when the daemon is in no swarm, or not a manager
    swarm_name: str = ""  # swarm.name from config

    def said(self) -> str:
        """``swarm production (abcdef123456), node manager1 (manager), daemon unix://...``"""
        swarm = self.swarm_id[:12] or "none"
        named = f"{self.swarm_name} ({swarm})" if self.swarm_name else swarm
        role = "manager" if self.manager else "not a manager"
        return f"swarm {named}, node {self.hostname} ({role}), daemon {self.daemon}"

    def as_data(self) -> dict[str, Any]:
        return asdict(self)


def wrong_swarm(serving: str, found: Whereabouts) -> str:
    """Why a worker takes no jobs: the swarm it serves is not the one its daemon is in."""
    return (
        f"this worker serves swarm {serving}, but the Docker daemon at {found.daemon} "
        f"(node {found.hostname}) is in swarm {found.swarm_id or 'none'}: it takes no jobs "
        f"until an admin confirms the new swarm (!swarm accept {found.swarm_id}) or "
        "swarm.id names it"
    )
