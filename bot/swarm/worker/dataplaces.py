"""Where data lives, looked at by one worker at a time (a lease): which nodes each named
volume's running tasks are on, kept (``bot.queue.volumestore``) so that a task that starts
on a node where its local volume has never been used, while it has been used elsewhere, is
told once: it may be running on an empty volume."""

from __future__ import annotations

import datetime
import logging
import time
from dataclasses import asdict
from typing import Any

from bot.swarm import volumes
from bot.swarm.worker.lifecycle import WorkerState

log = logging.getLogger("swarmbot.volumes")

LOOK_SECONDS = 5.0


class DataPlaces:
    def __init__(self, state: WorkerState) -> None:
        self.state = state
        self.store = state.queue.volume_store()
        self.lease = state.queue.lease(state.queue.keys.watch("volumes-leader"))
        self._next = 0.0

    def maybe_look(self) -> None:
        """A look when it is time and this worker holds the lease (the heartbeat calls it)."""
        if time.monotonic() < self._next or self.state.wrong_swarm.is_set():
            return
        self._next = time.monotonic() + LOOK_SECONDS
        if self.lease.held():
            self.look()

    def look(self) -> None:
        engine = self.state.engine
        found = volumes.uses(
            engine.services(), engine.tasks(**{"desired-state": "running"}), engine.nodes()
        )
        firsts = self.store.record([asdict(u) for u in found], time.time())
        for volume, node, before in firsts:
            use = next(u for u in found if u.volume == volume and u.node == node)
            if use.portable:
                continue
            text = (
                f"{use.service} started on {node}, where volume {volume} has no data (its "
                f"data is on {_where(before)}): it may be running on an empty volume"
            )
            log.warning("%s", text)
            self.state.notices.post(use.stack, text, [], f"volume-away-{volume}-{node}", "failed")


def _where(record: dict[str, Any]) -> str:
    return ", ".join(
        f"{host} since {datetime.date.fromtimestamp(float(since)).isoformat()}"
        for host, since in sorted(record["nodes"].items())
    )
