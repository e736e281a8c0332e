"""Deny by default, and bad input: a clear, short reply, nothing queued, nothing changed."""

from __future__ import annotations

import pytest

from tests.harness import BotEnv


@pytest.mark.parametrize(
    ("user", "line", "expected"),
    [
        (
            "console:mallory",
            "!deploy {run}-app",
            "refused: you (console:mallory) have no role here",
        ),
        ("console:mallory", "!services", "refused: you (console:mallory) have no role here"),
        (
            "console:viewer",
            "!restart {run}-app_web",
            "refused: your roles (viewer) do not include the command `restart`",
        ),
        (
            "console:viewer",
            "!deploy {run}-app",
            "refused: your roles (viewer) do not include the command `deploy`",
        ),
        (
            "console:dev",
            "!deploy {run}-other",
            "refused: your roles do not allow `deploy` on stack `{run}-other`",
        ),
        (
            "console:dev",
            "!services {run}-other",
            "refused: your roles do not allow `services` on stack `{run}-other`",
        ),
    ],
)
def test_refused_commands_queue_nothing(
    bot: BotEnv, run_id: str, user: str, line: str, expected: str
) -> None:
    jobs = bot.queued_jobs()
    out = bot.chat(line.format(run=run_id), user=user)
    assert expected.format(run=run_id) in out, out
    assert bot.queued_jobs() == jobs


def test_worker_refuses_a_service_outside_the_users_stacks(bot: BotEnv, run_id: str) -> None:
    """The stack of `!restart <service>` is known only once the worker resolves the name."""
    other = bot.add_stack(f"{run_id}-other", {"guarded": {}})
    bot.chat(f"!deploy {other}")
    out = bot.chat("!restart guarded", user="console:dev")
    assert f"your roles do not allow `restart` on stack `{other}`" in out, out


BAD_INPUT = [
    (
        "!deploy ../etc/passwd",
        "`../etc/passwd` is not a stack name; usage: !deploy <stack|all> [--force]",
    ),
    ("!deploy dev; rm -rf /", "`dev;` is not a stack name; usage: !deploy <stack|all> [--force]"),
    ("!restart gerrit && reboot", "too many arguments (`&& reboot`); usage: !restart <service>"),
    ("!deploy dev;", "`dev;` is not a stack name"),
    ("!deploy $(reboot)", "`$(reboot)` is not a stack name"),
    ("!restart `id`", "`'id'` is not a service name"),
    ("!deploy", "missing <stack|all>; usage: !deploy <stack|all> [--force]"),
    ("!", "empty command; !help lists the commands"),
    ("!frobnicate", "unknown command `frobnicate`; !help lists the commands"),
    ("!deploy dév", "`dév` is not a stack name"),
    ("!deploy ｄｅｖ", "`ｄｅｖ` is not a stack name"),
    ("!restart gerrit\u202e", "control characters"),
    ("!ps " + "a" * 2000, "that message is too long (2004 characters; the limit is 1000)"),
    ("!ps " + "a" * 80, "is not a service name"),
]


def test_bad_input_gets_a_clear_error_and_queues_nothing(bot: BotEnv) -> None:
    jobs = bot.queued_jobs()
    out = bot.chat(*(line for line, _ in BAD_INPUT))
    for line, expected in BAD_INPUT:
        assert expected in out, f"{line!r}: expected {expected!r} in\n{out}"
    assert bot.queued_jobs() == jobs
    assert "Traceback" not in out


def test_help_lists_only_what_the_user_may_run(bot: BotEnv) -> None:
    viewer = bot.chat("!help", user="console:viewer")
    assert "!services [stack]" in viewer and "!ps <service>" in viewer
    assert "!deploy" not in viewer and "!restart" not in viewer
    detail = bot.chat("!help deploy", user="console:dev")
    assert "usage: !deploy <stack|all>" in detail
    assert "your stacks: sbt" in detail


def test_unknown_user_can_learn_their_id(bot: BotEnv) -> None:
    assert "you are console:newcomer, with no roles" in bot.chat(
        "!whoami", user="console:newcomer"
    )
    out = bot.chat("!help", user="console:newcomer")
    assert "you (console:newcomer) have no role yet" in out
    assert "!deploy" not in out


def test_whoami_shows_roles(bot: BotEnv, run_id: str) -> None:
    out = bot.chat("!whoami", user="console:dev")
    assert "you are console:dev, with roles: developer" in out
    assert f"stacks {run_id}-app*" in out
