"""Property-based fuzz of the dispatcher and the console: any input, any user; 0 crashes,
0 jobs for users who may not run them.

`make test` runs a few hundred generated inputs; `make faults` runs 10,000
(``FUZZ_EXAMPLES``). No worker serves this env: what gets queued stays on the queue, where
the test checks every job against the policy.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.core.config import Secret
from bot.core.policy import Policy
from bot.core.wire import decode_job
from commands import REGISTRY, SCHEMAS
from tests.harness import ROOT, SWARMBOT, BotEnv
from tests.testbot import TestBot

pytestmark = pytest.mark.faults

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
USERS = ["console:admin", "console:dev", "console:viewer", "console:nobody", "console:ops"]
WORDS = [
    *REGISTRY,
    "all",
    "--force",
    "fz-app",
    "fz-app_web",
    "fz-other",
    "web",
    "fz-other_db",
    "42",
    "ABCD",
    "../x",
    "$(id)",
    "a\udcffb",
    "\u202e",
    "ｄｅｖ",
    "*",
]


@pytest.fixture(scope="module")
def fuzz_env(workdir: Path, redis_url: str) -> Iterator[BotEnv]:
    env = BotEnv(
        workdir,
        redis_url,
        "fuzz",
        extra_roles="""
        [roles.developer]
        users = ["console:dev"]
        commands = ["services", "ps", "restart", "deploy", "logs", "jobs", "cancel"]
        stacks = ["fz-app*"]

        [roles.viewer]
        users = ["console:viewer"]
        commands = ["services", "stacks", "ps"]
        stacks = ["*"]

        [roles.ops]
        users = ["console:ops"]
        commands = ["deploy", "undeploy", "rollback", "restart"]
        stacks = ["fz-other"]
        """,
    )
    yield env


lines = st.one_of(
    # Well-formed commands with names from the policy's world: what exercises the policy.
    st.builds(
        lambda name, words: f"!{name} " + " ".join(words),
        st.sampled_from(sorted(REGISTRY)),
        st.lists(st.sampled_from(WORDS[len(REGISTRY) :]), max_size=2),
    ),
    st.text(max_size=60),
    st.builds(
        lambda prefix, words: prefix + " ".join(words),
        st.sampled_from(["!", "! ", "!!", " !", "?"]),
        st.lists(st.one_of(st.sampled_from(WORDS), st.text(max_size=12)), max_size=4),
    ),
)


def test_dispatcher_fuzz_never_crashes_nor_queues_what_policy_forbids(
    fuzz_env: BotEnv,
) -> None:
    bot = TestBot(fuzz_env.config)
    seen: Counter[str] = Counter()
    try:

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(line=lines, user=st.sampled_from(USERS))
        def check(line: str, user: str) -> None:
            reply = bot.reply(line, user)
            seen[reply.status if reply else "ignored"] += 1
            if reply is not None:
                assert reply.text and reply.status in (
                    "info",
                    "ok",
                    "failed",
                    "error",
                    "refused",
                    "queued",
                ), reply

        check()
    finally:
        bot.close()
    # The run exercised every path: ignored, refused, bad input, answered and queued.
    assert all(seen[s] for s in ("ignored", "refused", "error", "info", "queued")), seen
    policy = Policy(bot.config.roles)
    secret = Secret(fuzz_env.secret.encode())
    entries = fuzz_env.redis().xrange(f"{fuzz_env.prefix}:jobs")
    for _id, fields in entries:
        job = decode_job(fields, secret, float(job_created(fields)), 10**6, SCHEMAS)
        command = job.command
        assert policy.may_run(job.requester, command).allowed, job
        stack = job.args.get("stack")
        if stack == "all":
            assert policy.may_touch_all(job.requester, command).allowed, job
        elif stack:
            assert policy.may_touch(job.requester, command, stack).allowed, job


def job_created(fields: dict[str, str]) -> float:
    return float(json.loads(fields["job"])["created"])


def test_console_fuzz_any_bytes_never_crash_it(fuzz_env: BotEnv) -> None:
    """Random bytes, line after line, from a user with no role: every line answered or
    ignored, the last command still runs, nothing queued, exit 0."""
    rng = random.Random(int(os.environ.get("FUZZ_SEED", "7")))
    count = max(50, EXAMPLES // 5)
    junk = [
        bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))).replace(b"\n", b" ")
        for _ in range(count)
    ]
    data = b"\n".join(b"!" + j if i % 2 else j for i, j in enumerate(junk)) + b"\n!whoami\n"
    before = fuzz_env.queued_jobs()
    proc = subprocess.run(
        [*SWARMBOT, "console", "--config", str(fuzz_env.config), "--user", "console:nobody"],
        input=data,
        capture_output=True,
        timeout=300,
        cwd=ROOT,
        env=fuzz_env.env(),
    )
    out, err = proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
    assert proc.returncode == 0, (out[-2000:], err[-2000:])
    assert "Traceback" not in err, err[-3000:]
    assert out.rstrip().endswith("with no roles yet; ask an admin to add you") or (
        "you are console:nobody" in out.splitlines()[-1]
    ), out[-500:]
    assert fuzz_env.queued_jobs() == before
