"""The policy in front of dispatch, in process against the real Redis (no worker runs: jobs
stay queued, so they can be inspected): a hand-written permission matrix, and
property-based tests over arbitrary input."""

from __future__ import annotations

import asyncio
import fnmatch
import json
import secrets
import unicodedata
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.chat.dispatch import Dispatcher
from bot.core.config import load
from bot.core.replies import Message
from bot.queue.producer import JobQueue
from commands import REGISTRY
from tests.harness import write_config

pytestmark = pytest.mark.chat

ROLES = {
    "console:admin": {"commands": "*", "stacks": ["*"]},
    "console:dev": {
        "commands": {"services", "ps", "restart", "deploy", "stacks", "jobs"},
        "stacks": ["app*"],
    },
    "console:viewer": {"commands": {"services", "stacks", "ps"}, "stacks": ["*"]},
    "console:nobody": {"commands": set(), "stacks": []},
}
OPEN = {"help", "whoami", "confirm", "cancel"}

# (command line, command name, stack it touches or None, what an allowed user gets)
LINES = [
    ("!help", "help", None, "answered"),
    ("!whoami", "whoami", None, "answered"),
    ("!services", "services", None, "queued"),
    ("!services app1", "services", "app1", "queued"),
    ("!services other", "services", "other", "queued"),
    ("!stacks", "stacks", None, "queued"),
    ("!ps web", "ps", None, "queued"),
    ("!restart web", "restart", None, "queued"),
    ("!deploy app1", "deploy", "app1", "queued"),
    ("!deploy other", "deploy", "other", "queued"),
    ("!deploy all", "deploy", "*", "confirm"),
    ("!undeploy app1", "undeploy", "app1", "confirm"),
    ("!jobs", "jobs", None, "answered"),
    ("!cancel 999999", "cancel", None, "answered"),
    ("!confirm ABCD", "confirm", None, "answered"),
    ("!audit", "audit", None, "answered"),
]


def expected(user: str, command: str, stack: str | None, allowed_outcome: str) -> str:
    role = ROLES[user]
    if command in OPEN:
        return allowed_outcome
    if role["commands"] != "*" and command not in role["commands"]:
        return "refused"
    if stack == "*":
        return allowed_outcome if "*" in role["stacks"] else "refused"
    if stack and not any(fnmatch.fnmatchcase(stack, g) for g in role["stacks"]):
        return "refused"
    return allowed_outcome


def outcome(status: str | None, text: str) -> str:
    if status == "refused":
        return "refused"
    if status == "queued":
        return "queued"
    if "!confirm " in text and "To go ahead" in text:
        return "confirm"
    return "answered"


@pytest.fixture(scope="module")
def dispatcher_config(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Path:
    root = tmp_path_factory.mktemp("policy")
    (root / "stacks").mkdir()
    roles = ""
    for user, role in ROLES.items():
        name = user.split(":")[1]
        commands = ["*"] if role["commands"] == "*" else sorted(role["commands"])
        roles += f'\n[roles.m_{name}]\nusers = ["{user}"]\ncommands = {json.dumps(commands)}\n'
        roles += f"stacks = {json.dumps(role['stacks'])}\n"
    return write_config(
        root / "config.toml",
        redis_url,
        root / "stacks",
        f"p{secrets.token_hex(4)}",
        secrets.token_urlsafe(36),
        extra_roles=roles
        + "\n[safety]\nrate_limit_per_minute = 10000\nrefusals_per_minute = 10000\n",
    )


def run(config_path: Path, user: str, text: str) -> tuple[str | None, str, int]:
    """Dispatch one message; returns (status, reply text, jobs now in the queue)."""

    async def go() -> tuple[str | None, str, int]:
        config = load(config_path, commands=REGISTRY)
        client = aioredis.Redis.from_url(config.redis_url, decode_responses=True)
        try:
            dispatcher = Dispatcher(config, JobQueue(client, config), "policy-test")
            reply = await dispatcher.handle(Message("console", user, "console", text))
            jobs = await client.xlen(f"{config.redis_prefix}:jobs")
            return (reply.status if reply else None), (reply.text if reply else ""), jobs
        finally:
            await client.aclose()

    return asyncio.run(go())


@pytest.mark.parametrize("user", list(ROLES))
@pytest.mark.parametrize(("line", "command", "stack", "allowed"), LINES)
def test_permission_matrix(
    dispatcher_config: Path, user: str, line: str, command: str, stack: str | None, allowed: str
) -> None:
    _, _, before = run(dispatcher_config, "console:admin", "!help")
    status, text, after = run(dispatcher_config, user, line)
    want = expected(user, command, stack, allowed)
    assert outcome(status, text) == want, f"{user} {line}: {text}"
    assert after - before == (1 if want == "queued" else 0), (
        "queued without being allowed, or not at all"
    )


# -- arbitrary input --------------------------------------------------------------------

NASTY = st.sampled_from(
    [
        "; rm -rf /",
        "$(reboot)",
        "`id`",
        "../../etc/passwd",
        "dev\x00",
        "ｄｅｖ",
        "dеv",
        "\u202edev",
        "dev\n!deploy all",
        "*",
        "?",
        "[a-z]",
        "%s%s",
        "{{7*7}}",
        "'\"",
        "\\",
        "-" * 70,
        "a" * 2000,
        "🚀",
    ]
)
WORD = st.one_of(NASTY, st.text(max_size=40), st.from_regex(r"[a-z0-9_-]{1,12}", fullmatch=True))
COMMAND = st.sampled_from(
    [line.split()[0] for line, *_ in LINES] + ["!", "!!deploy", "! deploy", "!DEPLOY"]
)
TEXT = st.one_of(
    st.text(max_size=300),
    st.builds(lambda c, a: " ".join([c, *a]), COMMAND, st.lists(WORD, max_size=4)),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(user=st.sampled_from(list(ROLES)), text=TEXT)
def test_arbitrary_input_never_crashes_and_never_queues_what_is_not_allowed(
    dispatcher_config: Path, user: str, text: str
) -> None:
    _, _, before = run(dispatcher_config, "console:admin", "!help")
    status, reply, after = run(dispatcher_config, user, text)
    if status is None:
        assert not text.strip().startswith("!"), "a command got no answer at all"
        assert after == before
        return
    assert len(reply) < 600, "replies stay short"
    assert not any(unicodedata.category(ch) in ("Cc", "Cf") for ch in reply), (
        "control characters echoed"
    )
    if status == "queued":
        assert after == before + 1
        words = text.split()
        command = words[0][1:].lower()
        stack = words[1] if command in ("deploy", "services") and len(words) > 1 else None
        assert expected(user, command, stack, "queued") == "queued", f"{user} queued {text!r}"
    else:
        assert after == before, f"{user}: {text!r} queued a job but said {reply!r}"


def test_a_burst_of_commands_is_queued_not_refused(dispatcher_config: Path) -> None:
    """Adapters handle messages side by side; 150 at once must all be queued."""
    from bot.queue.clients import async_client

    async def go() -> list[str | None]:
        config = load(dispatcher_config, commands=REGISTRY)
        client = async_client(config.redis_url)
        try:
            dispatcher = Dispatcher(config, JobQueue(client, config), "policy-burst")
            replies = await asyncio.gather(
                *(
                    dispatcher.handle(Message("console", "console:admin", "c", "!stacks"))
                    for _ in range(150)
                )
            )
            return [r.status if r else None for r in replies]
        finally:
            await client.aclose()

    assert asyncio.run(go()) == ["queued"] * 150
