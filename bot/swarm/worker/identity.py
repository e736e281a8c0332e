"""Which swarm this worker serves, checked at start and with the heartbeat.

The swarm ID is remembered in Redis (``bot.queue.swarmstore``: the first one a worker saw,
or the one an admin accepted) unless ``swarm.id`` names it. A worker whose daemon is in
another swarm (a socket mounted from the wrong daemon, a dockerd replaced) takes no jobs,
its watchers tell nothing of that swarm, ``/healthz`` names both IDs, and one notice says
so; it goes on once the swarm is accepted (``!swarm accept ID``) or configured.
"""

from __future__ import annotations

import logging
import threading

import docker.errors
import requests.exceptions

from bot.core import doctor
from bot.core.doctor import Finding
from bot.core.whereabouts import Whereabouts, wrong_swarm
from bot.queue.errors import StoreError
from bot.swarm.worker.lifecycle import WorkerState

log = logging.getLogger("swarmbot.worker")

RECHECK_SECONDS = 2.0  # while waiting for the right swarm


class SwarmIdentity:
    def __init__(self, state: WorkerState) -> None:
        self.state = state
        self.store = state.queue.swarm_store(state.config.signing_secret)
        self.where: Whereabouts | None = None
        self.wrong = ""  # why this worker takes no jobs now ("" when it serves its swarm)

    def check(self) -> bool:
        """Look at the daemon again; True when it is in the swarm this worker serves."""
        config = self.state.config
        where = self.state.engine.whereabouts(config.swarm_name)
        self.where = where
        self.store.publish(self.state.queue.consumer, where.as_data())
        serving = config.swarm_id
        if not serving and where.swarm_id:
            serving = self.store.accept_first(where.swarm_id)
        if not where.swarm_id:
            wrong = (
                f"the Docker daemon at {where.daemon} (node {where.hostname}) is in no swarm, "
                "or is not a manager: this worker takes no jobs"
            )
        elif where.swarm_id != serving:
            wrong = wrong_swarm(serving, where)
        else:
            wrong = ""
        if wrong and wrong != self.wrong:
            log.error("%s", wrong)
            self._tell(where, wrong)
        elif self.wrong and not wrong:
            log.info("serving %s again: taking jobs", where.said())
        self.wrong = wrong
        if wrong:
            self.state.wrong_swarm.set()
        else:
            self.state.wrong_swarm.clear()
        return not wrong

    def wait_until_right(self, stop: threading.Event) -> None:
        """Until the daemon is in the swarm served (or stopping); Docker or Redis down is
        waited out, as at any start."""
        while not stop.is_set():
            try:
                if self.check():
                    return
            except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
                self.wrong = f"Docker is not reachable: {exc}"
                log.warning("%s; retrying", self.wrong)
            except StoreError as exc:
                log.warning("redis unavailable (%s); retrying", exc)
            stop.wait(RECHECK_SECONDS)

    def finding(self) -> Finding:
        """The daemon, node and swarm, as ``swarmbot doctor`` says them."""
        try:
            self.check()
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            return doctor.docker(None, error=str(exc))
        return doctor.docker(self.where, self.wrong)

    def _tell(self, where: Whereabouts, wrong: str) -> None:
        """One notice per swarm found (not per worker start)."""
        if self.store.first_told(where.swarm_id or "none"):
            self.state.notices.post(
                "",
                f"worker {self.state.queue.consumer}: {wrong}",
                [],
                f"wrong-swarm-{where.swarm_id}",
                "failed",
            )


def worker_findings(state: WorkerState, identity: SwarmIdentity) -> list[Finding]:
    """Everything the worker stands on, one finding each: its daemon (node, swarm), Redis,
    IPVS for overlay virtual IPs, and the chat platforms from this network."""
    redis_problem = state.queue.reachable()
    redis = Finding(
        "redis",
        not redis_problem,
        redis_problem or "reachable",
        "check redis.url / $SWARMBOT_REDIS_URL, and that the redis service runs",
    )
    return [
        identity.finding(),
        redis,
        doctor.ipvs(),
        *doctor.chat_reachable(state.config.source),
    ]
