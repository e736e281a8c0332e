"""A real Alertmanager (Debian's ``prometheus-alertmanager``) on loopback, for the alert
tests: its webhook points at the bot's receiver, with a bearer token from a file, and it
groups and delivers alerts the tests post to its own API, as in production."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from tests.harness import free_port, wait_until

BINARY = "prometheus-alertmanager"


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Alertmanager:
    def __init__(self, workdir: Path, receiver_url: str, token_file: Path) -> None:
        self.dir = workdir / "alertmanager"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "route": {
                "receiver": "swarmbot",
                "group_by": ["alertname"],
                # Delivered at once, and each change to a group within a second.
                "group_wait": "0s",
                "group_interval": "1s",
                "repeat_interval": "1h",
            },
            "receivers": [
                {
                    "name": "swarmbot",
                    "webhook_configs": [
                        {
                            "url": receiver_url,
                            "send_resolved": True,
                            "http_config": {
                                "authorization": {"credentials_file": str(token_file)}
                            },
                        }
                    ],
                }
            ],
        }
        (self.dir / "alertmanager.yml").write_text(json.dumps(config))  # JSON is YAML
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which(BINARY) or f"/usr/bin/{BINARY}"
        self.log = open(self.dir / "alertmanager.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={self.dir / 'alertmanager.yml'}",
                f"--storage.path={self.dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",  # one instance: no gossip port
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_until(self._ready, 30, "Alertmanager to be ready")

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError((self.dir / "alertmanager.log").read_text()[-2000:])
        try:
            return requests.get(f"{self.url}/-/ready", timeout=2).ok
        except requests.RequestException:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.proc = None
            self.log.close()

    def fire(self, labels: dict[str, str], summary: str = "", starts: float = 0.0) -> None:
        """Post one firing alert to Alertmanager's own API."""
        alert: dict[str, Any] = {
            "labels": labels,
            "annotations": {"summary": summary} if summary else {},
            "startsAt": iso(starts or time.time()),
        }
        requests.post(f"{self.url}/api/v2/alerts", json=[alert], timeout=5).raise_for_status()

    def resolve(self, labels: dict[str, str], starts: float) -> None:
        alert = {"labels": labels, "startsAt": iso(starts), "endsAt": iso(time.time() - 1)}
        requests.post(f"{self.url}/api/v2/alerts", json=[alert], timeout=5).raise_for_status()

    def silences(self) -> list[dict[str, Any]]:
        return list(requests.get(f"{self.url}/api/v2/silences", timeout=5).json())

    def alerts(self) -> list[dict[str, Any]]:
        return list(requests.get(f"{self.url}/api/v2/alerts", timeout=5).json())
