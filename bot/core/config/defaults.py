"""Every key's type and default, in one table: the parser reads it, the worker's own
fall-backs read it (``registry_defaults``), and docs/CONFIGURATION.md is generated from it,
so a default is written once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bot.core.alerting.ties import SERVICE_LABELS, STACK_LABELS
from bot.core.config.model import RegistryConfig

RESOLVE_IMAGE_MODES = ("always", "changed", "never")
POLICIES = ("notify", "confirm", "auto")
SEMVER_LEVELS = ("patch", "minor", "major")

# The schema: key -> (type, default). A default of ``REQUIRED`` makes the key mandatory.
REQUIRED = object()
SCHEMA: dict[str, dict[str, tuple[type | tuple[type, ...], Any]]] = {
    "bot": {
        "prefix": (str, "!"),
        "stacks_dir": (str, "stacks"),
        "adapters": (list, []),
    },
    "redis": {
        "url": (str, "redis://127.0.0.1:6379/0"),
        "prefix": (str, "swarmbot"),
        "min_replicas": (int, 1),
        "replica_wait_ms": (int, 1000),
    },
    "security": {
        "signing_secret": (str, None),
        "signing_secret_file": (str, None),
        "public_variables": (list, []),
        "host_access_stacks": (list, []),
    },
    "queue": {
        "job_ttl_seconds": (int, 600),
        "worker_concurrency": (int, 4),
        "worker_timeout_seconds": (int, 10),
        "state_dir": (str, "/var/lib/swarmbot"),
        "read_slots": (int, 2),
    },
    "deploy": {
        "deadline_seconds": ((int, float), 300),
        "first": (list, ["ingress", "support"]),
        "resolve_image": (str, "always"),
        "docker_cli": (str, "docker"),
        "cli_timeout_seconds": ((int, float), 180),
        "max_stack_file_bytes": (int, 1024 * 1024),
    },
    "safety": {
        "confirm": (
            list,
            ["undeploy", "deploy all", "deploy --prune", "rollback", "drain", "rm", "label"],
        ),
        "confirm_seconds": (int, 120),
        "second_approver_stacks": (list, []),
        "rate_limit_per_minute": (int, 30),
        "refusals_per_minute": (int, 10),
    },
    "swarm": {
        "id": (str, ""),
        "name": (str, ""),
    },
    "health": {
        "host": (str, "127.0.0.1"),
        "bot_port": (int, 0),
        "worker_port": (int, 0),
    },
    "notices": {
        "route": (list, []),
        "quiet_seconds": ((int, float), 3),
        "poll_seconds": ((int, float), 15),
    },
    "git": {
        "url": (str, None),
        "branch": (str, "main"),
        "path": (str, "stacks"),
        "ssh_key_file": (str, None),
        "known_hosts_file": (str, None),
        "token": (str, None),
        "token_file": (str, None),
        "token_user": (str, "git"),
        "poll_seconds": ((int, float), 300),
    },
    "changes": {
        "policy": (dict, {}),
        "default": (str, "notify"),
        "approval_seconds": (int, 86400),
    },
    "webhook": {
        "host": (str, "127.0.0.1"),
        "port": (int, 0),
        "path": (str, "/hooks/git"),
        "secret": (str, None),
        "secret_file": (str, None),
        "max_age_seconds": (int, 3600),
    },
    "alerts": {
        "host": (str, "127.0.0.1"),
        "port": (int, 0),
        "path": (str, "/hooks/alertmanager"),
        "token": (str, None),
        "token_file": (str, None),
        "username": (str, ""),
        "password": (str, None),
        "password_file": (str, None),
        "alertmanager_url": (str, ""),
        "matrix": (list, []),
        "slack": (list, []),
        "route": (list, []),
        "service_labels": (list, list(SERVICE_LABELS)),
        "stack_labels": (list, list(STACK_LABELS)),
        "confirm_silence_over_seconds": (int, 4 * 3600),
        "max_silence_seconds": (int, 7 * 86400),
        "new_messages_per_minute": (int, 6),
        "flap_seconds": (int, 3600),
    },
    "registry": {
        "credentials_file": (str, None),
        "cache_seconds": ((int, float), 300),
        "poll_seconds": ((int, float), 0),
        "semver": (dict, {}),
        "insecure": (list, []),
    },
    "matrix": {
        "homeserver": (str, None),
        "user_id": (str, None),
        "device_id": (str, "SWARMBOT"),
        "access_token": (str, None),
        "access_token_file": (str, None),
        "password": (str, None),
        "password_file": (str, None),
        "rooms": (list, []),
        "threads": (bool, True),
        "max_command_age_seconds": (int, 600),
    },
    "slack": {
        "mode": (str, "socket"),
        "bot_token": (str, None),
        "bot_token_file": (str, None),
        "app_token": (str, None),
        "app_token_file": (str, None),
        "signing_secret": (str, None),
        "signing_secret_file": (str, None),
        "channels": (list, []),
        "slash_command": (str, "/swarm"),
        "http_host": (str, "127.0.0.1"),
        "http_port": (int, 3000),
        "http_path": (str, "/slack/events"),
        "api_url": (str, "https://slack.com/api/"),
    },
}
ADAPTERS = ("matrix", "slack")
ROLE_KEYS = {"users", "commands", "stacks", "approves", "swarms"}


def registry_defaults() -> RegistryConfig:
    """[registry] as an empty section reads: what a worker built without a config uses."""
    table = {key: default for key, (_, default) in SCHEMA["registry"].items()}
    creds = table["credentials_file"]
    return RegistryConfig(
        credentials_file=Path(creds) if creds else None,
        cache_seconds=float(table["cache_seconds"]),
        poll_seconds=float(table["poll_seconds"]),
        semver=(),
        insecure=tuple(table["insecure"]),
    )
