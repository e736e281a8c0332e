"""Approvers by role, on the real swarm: where a second person must approve a change
(`safety.second_approver_stacks`), and a role names the stack in `approves`, only its
members approve; nobody approves their own change; the approval waits as long as
`changes.approval_seconds`, not the two minutes of a plain confirmation."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.harness import BotEnv

pytestmark = pytest.mark.swarm


@pytest.fixture(scope="module")
def env(
    workdir: Path, redis_url: str, swarm: docker.DockerClient, run_id: str
) -> Iterator[BotEnv]:
    env = BotEnv(
        workdir,
        redis_url,
        "approvers",
        deadline=25,
        extra_roles=f"""
        [roles.dev]
        users = ["console:bob"]
        commands = ["deploy", "confirm"]
        stacks = ["*"]

        [roles.release]
        users = ["console:carol"]
        commands = ["deploy", "confirm"]
        stacks = ["*"]
        approves = ["{run_id}-ap*"]

        [changes]
        approval_seconds = 7200

        [safety]
        confirm = ["deploy"]
        second_approver_stacks = ["{run_id}-ap*"]
        rate_limit_per_minute = 10000
        refusals_per_minute = 10000
        """,
    )
    env.start_in_process()
    yield env


def test_only_an_approver_by_role_and_never_the_requester_approves(
    env: BotEnv, run_id: str
) -> None:
    stack = env.add_stack(f"{run_id}-ap", {"web": {}})
    asked = env.chat(f"!deploy {stack} --force", user="console:bob")
    code = re.search(r"!confirm ([A-Z0-9]{4}) within 2h", asked)
    assert code and "Someone else" in asked, asked
    ttl = env.redis().ttl(f"{env.prefix}:confirm:{code.group(1)}")
    assert 3600 < ttl <= 7200, ttl  # changes.approval_seconds, not safety.confirm_seconds
    assert "waits for a second approver" in env.chat(
        f"!confirm {code.group(1)}", user="console:bob"
    )
    # Self-approval: the requester again is not a second person.
    again = env.chat(f"!confirm {code.group(1)}", user="console:bob")
    assert "waits for a second approver" in again and "deployed" not in again, again
    # An admin may deploy the stack, but no role of theirs approves it.
    refused = env.chat(f"!confirm {code.group(1)}")
    assert f"you may not approve changes to {stack}" in refused, refused
    approved = env.chat(f"!confirm {code.group(1)}", user="console:carol")
    assert "approved by console:carol" in approved and f"deployed {stack}" in approved, approved
