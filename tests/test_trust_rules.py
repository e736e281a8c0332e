"""The rules behind the hardening round, case by case, without services: sealed records,
what gives a container the host, what an error may quote, who counts as an admin."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.core.config import Role, Secret
from bot.core.ids import stacks_named_by
from bot.core.policy import Policy
from bot.core.sealed import Forged, seal, unseal, unseal_dict
from bot.swarm import dockercli, hostaccess

pytestmark = pytest.mark.unit

SECRET = Secret(b"s" * 40)


def test_a_sealed_record_opens_under_its_own_key_only() -> None:
    sealed = seal(SECRET, "p:confirm:ABCD", {"user": "console:alice"})
    assert unseal_dict(SECRET, "p:confirm:ABCD", sealed) == {"user": "console:alice"}
    with pytest.raises(Forged, match="bad seal"):
        unseal(SECRET, "p:confirm:WXYZ", sealed)  # moved to another code
    with pytest.raises(Forged, match="bad seal"):
        unseal(Secret(b"t" * 40), "p:confirm:ABCD", sealed)  # another secret


@pytest.mark.parametrize(
    "raw",
    [
        '{"user": "console:admin"}',  # plain JSON: what the probe wrote
        "0" * 64 + '.{"user": "console:admin"}',
        b"\xff\xfe",
        12,
        "x" * 70_000,
    ],
)
def test_anything_but_a_sealed_record_is_forged(raw: object) -> None:
    with pytest.raises(Forged):
        unseal(SECRET, "p:confirm:ABCD", raw)


def test_a_sealed_value_of_another_shape_is_refused_as_a_record() -> None:
    with pytest.raises(Forged, match="not an object"):
        unseal_dict(SECRET, "k", seal(SECRET, "k", [1, 2]))


@pytest.mark.parametrize(
    ("spec", "key"),
    [
        ({"privileged": True}, "privileged"),
        ({"cap_add": ["SYS_ADMIN"]}, "cap_add"),
        ({"cap_add": ["CAP_NET_ADMIN"]}, "cap_add"),
        ({"cap_add": ["all"]}, "cap_add"),
        ({"volumes": [{"type": "bind", "source": "/", "target": "/host"}]}, "volumes"),
        ({"volumes": [{"type": "bind", "source": "/etc", "target": "/e"}]}, "volumes"),
        ({"volumes": [{"type": "bind", "source": "/etc/ssl/x", "target": "/e"}]}, "volumes"),
        (
            {"volumes": [{"type": "bind", "source": "/var/run/docker.sock", "target": "/s"}]},
            "volumes",
        ),
        (
            {"volumes": [{"type": "bind", "source": "/srv/x/../../proc", "target": "/p"}]},
            "volumes",
        ),
        (
            {"volumes": [{"type": "bind", "source": "/home/me/docker.sock", "target": "/s"}]},
            "volumes",
        ),
        ({"volumes": ["/:/host:ro"]}, "volumes"),
        ({"pid": "host"}, "pid"),
        ({"ipc": "host"}, "ipc"),
        ({"network_mode": "host"}, "network_mode"),
        ({"devices": ["/dev/sda:/dev/sda"]}, "devices"),
        ({"security_opt": ["seccomp:unconfined"]}, "security_opt"),
    ],
)
def test_what_gives_a_container_the_host(spec: dict[str, object], key: str) -> None:
    assert [k for k, _why in hostaccess.findings(spec)] == [key]


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"cap_add": ["CHOWN", "NET_BIND_SERVICE"]},
        {"volumes": [{"type": "volume", "source": "data", "target": "/etc"}]},
        {"volumes": [{"type": "bind", "source": "/srv/app/config", "target": "/etc/app"}]},
        {"volumes": ["data:/var/lib/postgresql/data"]},
        {"pid": "service:other"},
    ],
)
def test_what_does_not(spec: dict[str, object]) -> None:
    assert hostaccess.findings(spec) == []


def test_an_error_keeps_names_and_drops_content() -> None:
    message = (
        "services.web.environment must be a mapping; `root:$y$hunter2:19000` is not, "
        "nor is \"secret line here\"; see `web` and 'dev_net'"
    )
    cleaned = dockercli.without_content(message)
    assert "hunter2" not in cleaned
    assert "secret line" not in cleaned
    assert "`web`" in cleaned
    assert "'dev_net'" in cleaned
    assert "services.web.environment" in cleaned


def test_an_unknown_key_that_is_really_a_line_of_another_file_is_not_repeated() -> None:
    message = "(root) Additional property root:$y$hunter2:19000:0:99999:7:: is not allowed"
    assert dockercli.without_content(message) == "(root) Additional property … is not allowed"
    typo = "services.web Additional property imagee is not allowed"
    assert dockercli.without_content(typo) == typo


def test_stack_files_are_regular_files_only(tmp_path: Path) -> None:
    (tmp_path / "dev.yaml").write_text("services: {}\n")
    (tmp_path / "x.yaml").symlink_to(tmp_path / "dev.yaml")
    (tmp_path / "dir.yaml").mkdir()
    (tmp_path / "dev.override.yaml").symlink_to("/etc/hostname")
    assert list(dockercli.stack_files(tmp_path)) == ["dev"]
    assert dockercli.refused_files(tmp_path) == ["dir.yaml", "x.yaml"]
    assert dockercli.compose_files(tmp_path / "dev.yaml") == [tmp_path / "dev.yaml"]


def test_the_size_limit_counts_the_override_too(tmp_path: Path) -> None:
    (tmp_path / "dev.yaml").write_text("services: {}\n")
    (tmp_path / "dev.override.yaml").write_text("#" * 5000)
    dockercli.check_size(tmp_path / "dev.yaml", 10_000)
    with pytest.raises(dockercli.DeployError, match=r"dev.override.yaml is 5,000 bytes"):
        dockercli.check_size(tmp_path / "dev.yaml", 4096)


def test_admin_means_all_commands_on_all_stacks() -> None:
    policy = Policy(
        (
            Role("admin", frozenset({"a"}), frozenset({"*"}), ("*",)),
            Role("limited", frozenset({"l"}), frozenset({"*"}), ("dev*",)),
            Role("viewer", frozenset({"v"}), frozenset({"services"}), ("*",)),
        )
    )
    assert policy.is_admin("a")
    assert not policy.is_admin("l")
    assert not policy.is_admin("v")
    assert policy.may_see("l", "dev")
    assert not policy.may_see("l", "prod")
    assert not policy.may_see("l", "")  # work on no known stack: admins (and the asker)
    assert policy.may_see("a", "")


@pytest.mark.parametrize(
    ("name", "stacks"),
    [("dev_gerrit", ("dev_gerrit", "dev")), ("gerrit", ("gerrit",)), ("dev", ("dev",))],
)
def test_the_stacks_a_typed_name_shows(name: str, stacks: tuple[str, ...]) -> None:
    assert stacks_named_by(name) == stacks
