"""The docker CLI as handlers reach it (``bot.core.operations.StackCli``): found once, on
first use, and logged with its version (the CLI, not the Engine API, does ``docker stack``)."""

from __future__ import annotations

import logging

from bot.core.config import Config
from bot.swarm import dockercli

log = logging.getLogger("swarmbot.worker")


class StackCliOps:
    def __init__(self, config: Config) -> None:
        self.config = config
        self._cli: dockercli.DockerCli | None = None

    @property
    def docker(self) -> dockercli.DockerCli:
        if self._cli is None:
            self._cli = dockercli.DockerCli.find(
                self.config.docker_cli, self.config.docker_cli_timeout
            )
            log.info("using docker CLI %s (version %s)", self._cli.path, self._cli.version)
        return self._cli

    @property
    def version(self) -> str:
        return self.docker.version

    def remove_stack(self, stack: str) -> None:
        """``docker stack rm``: services, networks, configs, secrets; never volumes."""
        dockercli.remove(self.docker, stack)

    def remove_service(self, service_id: str) -> None:
        dockercli.remove_service(self.docker, service_id)

    def rollback(self, service_id: str) -> None:
        """``docker service rollback``: to the spec swarm kept before the last update."""
        dockercli.rollback(self.docker, service_id)
