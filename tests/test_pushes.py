"""Push webhook verification, each forge its own way, and the names git and registries use:
pure functions, checked on the inputs a forge or an attacker sends."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest

from bot.core.ids import GIT_REF
from bot.core.pushes import Refused, verify
from bot.swarm.registry import ImageRef, semver_newer

pytestmark = pytest.mark.unit

SECRET = b"a-webhook-secret-of-some-length"
NOW = 1_800_000_000.0
BODY = json.dumps(
    {
        "ref": "refs/heads/main",
        "after": "a" * 40,
        "head_commit": {"timestamp": "2027-01-15T07:59:00+00:00"},  # NOW - 1 min
    }
).encode()


def sig(body: bytes = BODY, secret: bytes = SECRET) -> str:
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


@pytest.mark.parametrize(
    ("headers", "forge"),
    [
        ({"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + sig()}, "github"),
        ({"X-Gitea-Event": "push", "X-Gitea-Signature": sig()}, "gitea"),
        ({"X-Forgejo-Event": "push", "X-Forgejo-Signature": sig()}, "forgejo"),
        ({"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": SECRET.decode()}, "gitlab"),
    ],
)
def test_each_forge_is_verified_its_own_way(headers: dict[str, str], forge: str) -> None:
    delivery = verify(headers, BODY, SECRET, NOW, 3600)
    assert (delivery.forge, delivery.event, delivery.branch) == (forge, "push", "main")
    assert delivery.after == "a" * 40
    assert delivery.digest == hashlib.sha256(BODY).hexdigest()


@pytest.mark.parametrize(
    ("headers", "body", "reason"),
    [
        ({}, BODY, "no signature or token header"),
        ({"X-GitHub-Event": "push", "X-Hub-Signature-256": sig()}, BODY, "bad signature"),
        (
            {"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + sig(BODY, b"guess")},
            BODY,
            "bad signature",
        ),
        ({"X-Gitea-Event": "push", "X-Gitea-Signature": sig()}, BODY + b" ", "bad signature"),
        ({"X-Gitea-Event": "push"}, BODY, "bad signature"),
        ({"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "guess"}, BODY, "bad signature"),
        (
            {"X-Gitea-Event": "push", "X-Gitea-Signature": sig(b"not json")},
            b"not json",
            "not JSON",
        ),
    ],
)
def test_what_is_refused(headers: dict[str, str], body: bytes, reason: str) -> None:
    with pytest.raises(Refused, match=reason):
        verify(headers, body, SECRET, NOW, 3600)


def test_a_push_of_old_commits_is_stale() -> None:
    headers = {"X-Gitea-Event": "push", "X-Gitea-Signature": sig()}
    with pytest.raises(Refused, match="stale: its newest commit is 61 min old"):
        verify(headers, BODY, SECRET, NOW + 3600, 3600)


@pytest.mark.parametrize(
    ("ref", "ok"),
    [
        ("main", True),
        ("v1.2.3", True),
        ("release/2026", True),
        ("3f2a9c1", True),
        ("-upload-pack=sh", False),
        ("a..b", False),
        ("x@{1}", False),
        ("a.lock", False),
        ("a b", False),
        ("a;b", False),
        ("$(id)", False),
    ],
)
def test_git_refs_from_chat(ref: str, ok: bool) -> None:
    assert bool(GIT_REF.match(ref)) is ok


def test_image_names_and_semver_steps() -> None:
    hub = ImageRef.parse("busybox")
    assert (hub.host, hub.repo, hub.tag, hub.name) == (
        "registry-1.docker.io",
        "library/busybox",
        "latest",
        "busybox:latest",
    )
    own = ImageRef.parse("127.0.0.1:5000/team/app:1.2.3@sha256:ab")
    assert (own.host, own.repo, own.tag, own.digest) == (
        "127.0.0.1:5000",
        "team/app",
        "1.2.3",
        "sha256:ab",
    )
    tags = ["1.2.3", "1.2.4", "1.3.0", "2.0.0", "latest", "1.2.10"]
    assert semver_newer(tags, "1.2.3", "patch") == "1.2.10"
    assert semver_newer(tags, "1.2.3", "minor") == "1.3.0"
    assert semver_newer(tags, "1.2.3", "major") == "2.0.0"
    assert semver_newer(tags, "latest", "major") == ""


def test_git_credentials_travel_in_the_environment_only(tmp_path: Path) -> None:
    """An HTTPS token goes as an http.extraHeader in GIT_CONFIG_* variables, an SSH key as
    ``-i`` with the host key checked; hooks are off. Nothing of it is an argument."""
    from bot.core.config import GitConfig, Secret
    from bot.swarm.gitsource import GitSource

    key, hosts = tmp_path / "id ed25519", tmp_path / "known hosts"
    config = GitConfig(
        "ssh://git@git.example.org/ops/infra.git",
        "main",
        "stacks",
        key,
        hosts,
        Secret(b"tok-123"),
        "oauth2",
        60,
    )
    env = GitSource(config, tmp_path)._env()
    pairs = {
        env[f"GIT_CONFIG_KEY_{i}"]: env[f"GIT_CONFIG_VALUE_{i}"]
        for i in range(int(env["GIT_CONFIG_COUNT"]))
    }
    assert (
        pairs["http.extraHeader"] == "Authorization: Basic b2F1dGgyOnRvay0xMjM="
    )  # oauth2:tok-123
    assert pairs["core.hooksPath"] == "/dev/null"
    assert env["GIT_TERMINAL_PROMPT"] == "0"
    ssh = env["GIT_SSH_COMMAND"]
    assert f"-i '{key}'" in ssh and f"'UserKnownHostsFile={hosts}'" in ssh, ssh
    assert "StrictHostKeyChecking=yes" in ssh and "BatchMode=yes" in ssh
