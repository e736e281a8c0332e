"""A real Synapse homeserver on 127.0.0.1 for the Matrix tests, and a human-side client.

Synapse is installed from PyPI into its own virtual environment at a fixed path (kept
between runs on the same machine; about 40 s to install on a fresh one). The human side
speaks the plain client-server API over HTTP, so what the tests see is what any Matrix
client would see in the room.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import os
import secrets
import subprocess
import uuid
from pathlib import Path
from typing import Any

import requests
import yaml

from tests.harness import free_port, wait_until

SYNAPSE_VENV = Path(os.environ.get("SWARMBOT_SYNAPSE_VENV", "/opt/swarmbot-synapse"))
SYNAPSE_REQUIREMENT = "matrix-synapse==1.163.2"
SERVER_NAME = "localhost"


def ensure_synapse() -> Path:
    """The venv's python, installing Synapse first if this machine does not have it yet."""
    python = SYNAPSE_VENV / "bin" / "python"
    probe = [str(python), "-c", "import synapse.app.homeserver"]
    # Test processes running side by side (pytest-xdist) install it once, not at once.
    with open("/tmp/swarmbot-synapse-install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
            return python
        _install()
    return python


def _install() -> None:
    subprocess.run(["python3", "-m", "venv", str(SYNAPSE_VENV)], check=True)
    subprocess.run(
        [
            str(SYNAPSE_VENV / "bin" / "pip"),
            "install",
            "-q",
            "--disable-pip-version-check",
            SYNAPSE_REQUIREMENT,
        ],
        check=True,
        capture_output=True,
    )


class Synapse:
    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.python = ensure_synapse()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.shared_secret = secrets.token_hex(16)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.dir / "synapse.log"
        self._configure()

    def _configure(self) -> None:
        subprocess.run(
            [
                str(self.python),
                "-m",
                "synapse.app.homeserver",
                "--server-name",
                SERVER_NAME,
                "--config-path",
                "hs.yaml",
                "--generate-config",
                "--report-stats=no",
            ],
            cwd=self.dir,
            check=True,
            capture_output=True,
        )
        unlimited = {"per_second": 1000, "burst_count": 1000}
        overrides = {
            "listeners": [
                {
                    "port": self.port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "http",
                    "tls": False,
                    "x_forwarded": False,
                    "resources": [{"names": ["client"], "compress": False}],
                }
            ],
            "registration_shared_secret": self.shared_secret,
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "federation_domain_whitelist": [],
            "presence": {"enabled": False},
            "bcrypt_rounds": 4,
            "rc_message": unlimited,
            "rc_registration": unlimited,
            "rc_joins": {"local": unlimited, "remote": unlimited},
            "rc_joins_per_room": unlimited,
            "rc_invites": {"per_room": unlimited, "per_user": unlimited, "per_issuer": unlimited},
            "rc_login": {"address": unlimited, "account": unlimited, "failed_attempts": unlimited},
            "rc_admin_redaction": unlimited,
            "rc_3pid_validation": unlimited,
            "rc_delayed_event_mgmt": unlimited,
        }
        (self.dir / "overrides.yaml").write_text(yaml.safe_dump(overrides))

    def start(self) -> None:
        log = self.log.open("ab")
        self.proc = subprocess.Popen(
            [
                str(self.python),
                "-m",
                "synapse.app.homeserver",
                "-c",
                "hs.yaml",
                "-c",
                "overrides.yaml",
            ],
            cwd=self.dir,
            stdout=log,
            stderr=log,
        )
        wait_until(self._ready, 60, "Synapse to answer", interval=0.2)

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"Synapse exited:\n{self.log.read_text()[-3000:]}")
        try:
            return requests.get(f"{self.url}/_matrix/client/versions", timeout=2).ok
        except requests.ConnectionError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(30)
            self.proc = None

    def register(self, name: str, admin: bool = False) -> MatrixUser:
        endpoint = f"{self.url}/_synapse/admin/v1/register"
        nonce = requests.get(endpoint, timeout=10).json()["nonce"]
        password = secrets.token_hex(12)
        mac = hmac.new(self.shared_secret.encode(), digestmod=hashlib.sha1)
        mac.update(
            b"\0".join(
                [
                    nonce.encode(),
                    name.encode(),
                    password.encode(),
                    b"admin" if admin else b"notadmin",
                ]
            )
        )
        body = {
            "nonce": nonce,
            "username": name,
            "password": password,
            "admin": admin,
            "mac": mac.hexdigest(),
        }
        resp = requests.post(endpoint, json=body, timeout=30)
        resp.raise_for_status()
        data = resp.json()
        return MatrixUser(self, data["user_id"], data["access_token"], password)


class MatrixUser:
    """A person in the room, through the client-server API."""

    def __init__(self, server: Synapse, user_id: str, token: str, password: str) -> None:
        self.server = server
        self.user_id = user_id
        self.token = token
        self.password = password

    def api(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        resp = requests.request(
            method,
            f"{self.server.url}/_matrix/client{path}",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
            **kwargs,
        )
        if not resp.ok:
            raise AssertionError(f"{method} {path}: {resp.status_code} {resp.text}")
        return resp.json()

    def create_room(self, invite: list[str], encrypted: bool = False) -> str:
        body: dict[str, Any] = {"preset": "private_chat", "invite": invite}
        if encrypted:
            body["initial_state"] = [
                {
                    "type": "m.room.encryption",
                    "state_key": "",
                    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
                }
            ]
        return self.api("POST", "/v3/createRoom", json=body)["room_id"]

    def invite(self, room: str, user_id: str) -> None:
        self.api("POST", f"/v3/rooms/{room}/invite", json={"user_id": user_id})

    def join(self, room: str) -> None:
        self.api("POST", f"/v3/join/{room}", json={})

    def send(self, room: str, content: dict[str, Any], kind: str = "m.room.message") -> str:
        return self.api("PUT", f"/v3/rooms/{room}/send/{kind}/{uuid.uuid4().hex}", json=content)[
            "event_id"
        ]

    def say(self, room: str, text: str, **extra: Any) -> str:
        return self.send(room, {"msgtype": "m.text", "body": text, **extra})

    def edit(self, room: str, event_id: str, text: str) -> str:
        return self.send(
            room,
            {
                "msgtype": "m.text",
                "body": f"* {text}",
                "m.new_content": {"msgtype": "m.text", "body": text},
                "m.relates_to": {"rel_type": "m.replace", "event_id": event_id},
            },
        )

    def relations(
        self, room: str, event_id: str, rel_type: str | None = None
    ) -> list[dict[str, Any]]:
        path = f"/v1/rooms/{room}/relations/{event_id}" + (f"/{rel_type}" if rel_type else "")
        return self.api("GET", path, params={"limit": 100})["chunk"]

    def thread(self, room: str, root: str) -> list[dict[str, Any]]:
        """Replies in the thread on ``root``, oldest first."""
        return sorted(self.relations(room, root, "m.thread"), key=lambda e: e["origin_server_ts"])

    def reactions(self, room: str, event_id: str, by: str) -> set[str]:
        return {
            e["content"]["m.relates_to"]["key"]
            for e in self.relations(room, event_id, "m.annotation")
            if e["sender"] == by
        }

    def membership(self, room: str, user_id: str) -> str:
        try:
            return self.api("GET", f"/v3/rooms/{room}/state/m.room.member/{user_id}")["membership"]
        except AssertionError:
            return "none"

    def messages(self, room: str, limit: int = 100) -> list[dict[str, Any]]:
        return self.api("GET", f"/v3/rooms/{room}/messages", params={"dir": "b", "limit": limit})[
            "chunk"
        ]


def wait_for_reply(
    user: MatrixUser, room: str, root: str, contains: str, timeout: float = 60
) -> dict[str, Any]:
    """The first thread reply on ``root`` whose body contains ``contains``."""

    def find() -> dict[str, Any] | None:
        return next(
            (e for e in user.thread(room, root) if contains in e["content"].get("body", "")), None
        )

    return wait_until(find, timeout, f"a reply containing {contains!r}", interval=0.2)


def settle(user: MatrixUser, room: str, timeout: float = 30) -> None:
    """Wait until the bot has handled everything sent before this call.

    Two `!whoami` in a row: the second is sent only after the first was answered, so it
    arrives in a later sync than anything sent before the first, and the bot handles syncs
    one after another.
    """
    for _ in range(2):
        marker = user.say(room, "!whoami")
        wait_for_reply(user, room, marker, "you are", timeout)
