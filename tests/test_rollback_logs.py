"""!rollback, swarm's own rollbacks, !logs, and log lines in failure reports."""

from __future__ import annotations

import re

import docker
import pytest

from tests.harness import BotEnv

pytestmark = pytest.mark.swarm


def env_of(swarm: docker.DockerClient, name: str) -> list[str]:
    return swarm.services.get(name).attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"]


def test_rollback_returns_to_the_previous_spec(
    bot: BotEnv, run_id: str, swarm: docker.DockerClient
) -> None:
    stack = f"{run_id}-rb"
    bot.add_stack(stack, {"svc": {"environment": {"VERSION": "one"}}})
    assert "converged" in bot.chat(f"!deploy {stack}")
    bot.add_stack(stack, {"svc": {"environment": {"VERSION": "two"}}})
    assert "converged" in bot.chat(f"!deploy {stack}")
    assert "VERSION=two" in env_of(swarm, f"{stack}_svc")
    asked = bot.chat("!rollback " + f"{stack}_svc")
    assert f"this returns {stack}_svc to its previous spec" in asked, asked
    code = re.search(r"!confirm ([A-Z0-9]{4})", asked).group(1)
    out = bot.chat(f"!confirm {code}")
    assert f"rolled back {stack}_svc: 1/1 running" in out, out
    assert "VERSION=one" in env_of(swarm, f"{stack}_svc")


def test_update_swarm_rolls_back_is_reported_as_a_failure(bot: BotEnv, run_id: str) -> None:
    stack = f"{run_id}-autorb"
    policy = {"failure_action": "rollback", "monitor": "2s"}
    bot.add_stack(stack, {"svc": {"update_config": policy}})
    assert "converged" in bot.chat(f"!deploy {stack}")
    bot.add_stack(
        stack,
        {
            "svc": {
                "command": ["sh", "-c", "echo cannot start >&2; exit 3"],
                "update_config": policy,
            }
        },
    )
    out = bot.chat(f"!deploy {stack}")
    assert f"deploy of {stack} FAILED" in out, out
    assert "ROLLED BACK" in out
    assert re.search(
        r"update (rolled back|rollback completed)|rollback", out.split("ROLLED BACK", 1)[1]
    ), out


def test_failure_report_carries_the_last_log_lines(bot: BotEnv, run_id: str) -> None:
    stack = bot.add_stack(
        f"{run_id}-loud",
        {
            "bad": {
                "command": [
                    "sh",
                    "-c",
                    "echo connecting with password=hunter2; echo giving up >&2; exit 1",
                ]
            }
        },
    )
    out = bot.chat(f"!deploy {stack}")
    assert f"{stack}_bad, last log lines:" in out, out
    assert "giving up" in out
    assert "hunter2" not in out and "password=***" in out


def test_logs_shows_recent_lines_with_secrets_masked(
    bot: BotEnv, run_id: str, swarm: docker.DockerClient
) -> None:
    # $$: compose would interpolate a single $ itself (and !check would flag it)
    script = (
        "echo token=abc123secret; echo db is $$DB_PASSWORD; "
        "i=0; while true; do i=$$((i+1)); echo tick $$i; sleep 0.2; done"
    )
    stack = bot.add_stack(
        f"{run_id}-chatty",
        {
            "talker": {
                "command": ["sh", "-c", script],
                "environment": {"DB_PASSWORD": "s3cr3t-value"},
            }
        },
    )
    assert "converged" in bot.chat(f"!deploy {stack}")
    out = bot.chat(f"!logs {stack}_talker 200")
    assert re.search(rf"{stack}_talker, last \d+ log lines", out), out
    assert "tick" in out
    assert "abc123secret" not in out and "s3cr3t-value" not in out
    assert "token=***" in out and "db is ***" in out
    short = bot.chat(f"!logs {stack}_talker 3")
    assert len([line for line in short.splitlines() if line.startswith("  ")]) == 3
    assert "is not a number from 1 to 200" in bot.chat(f"!logs {stack}_talker 201")
