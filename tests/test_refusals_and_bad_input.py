"""Deny by default, and bad input: a clear, short reply, nothing queued, nothing changed."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import docker
import pytest

from tests.harness import ROOT, SWARMBOT, BotEnv
from tests.testbot import TestBot

pytestmark = pytest.mark.chat


@pytest.fixture(scope="module")
def testbot(bot: BotEnv) -> Iterator[TestBot]:
    """The shared bot's dispatcher in-process: refusals and bad input need no subprocess."""
    tb = TestBot(bot.config)
    yield tb
    tb.close()


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
    bot: BotEnv, testbot: TestBot, run_id: str, user: str, line: str, expected: str
) -> None:
    jobs = bot.queued_jobs()
    out = testbot.ask(line.format(run=run_id), user=user)
    assert out.startswith(expected.format(run=run_id)), out
    assert bot.queued_jobs() == jobs


def test_services_outside_the_users_stacks_are_not_even_named(
    bot: BotEnv, run_id: str, swarm: docker.DockerClient
) -> None:
    """The stack of `!restart <service>` is known only once the worker resolves the name; a
    service the user may not act on is not a candidate, so ambiguity lists and "did you
    mean" never name services of stacks hidden from them."""
    other = bot.add_stack(f"{run_id}-other", {"guarded": {}, "shy": {}})
    mine = bot.add_stack(f"{run_id}-app-names", {"shy": {}})
    out = bot.chat(f"!deploy {other}", f"!deploy {mine}")
    assert out.count("] deployed ") == 2, out
    before = swarm.services.get(f"{other}_guarded").attrs["Version"]["Index"]
    out = bot.chat(
        "!restart guarded", f"!restart {other}_guarded", "!restart gaurded", user="console:dev"
    )
    assert out.count("failed: no service `") == 3, out
    assert other not in out.replace(f"{other}_guarded", ""), out  # only as the user typed it
    assert swarm.services.get(f"{other}_guarded").attrs["Version"]["Index"] == before
    # An admin sees both shys; the developer's `shy` is the one in their stack.
    assert "is ambiguous" in bot.chat("!restart shy")
    out = bot.chat("!restart shy", user="console:dev")
    assert f"restarted {mine}_shy: 1/1 running" in out, out
    assert other not in out


BAD_INPUT = [
    (
        "!deploy ../etc/passwd",
        "`../etc/passwd` is not a stack name; usage: !deploy <stack[@ref]|all> [--force|--prune]",
    ),
    # Found by asserting each line against its own reply: this one is refused for its
    # length before its first word is looked at (it passed on the next line's output).
    ("!deploy dev; rm -rf /", "too many arguments (`-rf /`); usage: !deploy <stack[@ref]|all>"),
    ("!restart gerrit && reboot", "too many arguments (`&& reboot`); usage: !restart <service>"),
    ("!deploy dev;", "`dev;` is not a stack name"),
    ("!deploy $(reboot)", "`$(reboot)` is not a stack name"),
    ("!restart `id`", "`'id'` is not a service name"),
    ("!deploy", "missing <stack[@ref]|all>; usage: !deploy <stack[@ref]|all> [--force|--prune]"),
    ("!", "empty command; !help lists the commands"),
    ("!frobnicate", "unknown command `frobnicate`; !help lists the commands"),
    ("!deploy dév", "`dév` is not a stack name"),
    ("!deploy ｄｅｖ", "`ｄｅｖ` is not a stack name"),
    ("!restart gerrit\u202e", "control characters"),
    ("!ps " + "a" * 2000, "that message is too long (2004 characters; the limit is 1000)"),
    ("!ps " + "a" * 80, "is not a service name"),
    # Invalid UTF-8 as a console reads it, and an unpaired surrogate from a JSON escape.
    ("!services a\udcffb", "that message has bytes that are not valid UTF-8 text in it"),
    ("!ps web\ud800", "that message has bytes that are not valid UTF-8 text in it"),
]


@pytest.mark.parametrize(("line", "expected"), BAD_INPUT)
def test_bad_input_gets_a_clear_error_and_queues_nothing(
    bot: BotEnv, testbot: TestBot, line: str, expected: str
) -> None:
    """Each line against its own reply: one line cannot pass on another line's output."""
    jobs = bot.queued_jobs()
    reply = testbot.reply(line)
    assert reply is not None and reply.status == "error", reply
    assert expected in reply.text, f"{line!r}: expected {expected!r} in {reply.text!r}"
    assert "\n" not in reply.text and len(reply.text) < 200, "a clear, short error"
    assert bot.queued_jobs() == jobs


def test_console_takes_any_bytes_and_runs_the_next_command(bot: BotEnv) -> None:
    """Invalid UTF-8 on the terminal is refused with a clear message; the next line runs."""
    proc = subprocess.run(
        [*SWARMBOT, "console", "--config", str(bot.config), "--user", "console:admin"],
        input=b"!services a\xffb\n!whoami\n",
        capture_output=True,
        timeout=60,
        cwd=ROOT,
        env=bot.env(),
    )
    out = proc.stdout.decode()
    assert proc.returncode == 0, (out, proc.stderr.decode())
    assert "that message has bytes that are not valid UTF-8 text in it" in out, out
    assert "you are console:admin" in out, out


def test_help_lists_only_what_the_user_may_run(testbot: TestBot) -> None:
    viewer = testbot.ask("!help", user="console:viewer")
    assert "!services [stack]" in viewer and "!ps <service>" in viewer
    assert "!deploy" not in viewer and "!restart" not in viewer
    detail = testbot.ask("!help deploy", user="console:dev")
    assert "usage: !deploy <stack[@ref]|all>" in detail
    assert "your stacks: sbt" in detail


def test_unknown_user_can_learn_their_id(testbot: TestBot) -> None:
    assert "you are console:newcomer, with no roles" in testbot.ask(
        "!whoami", user="console:newcomer"
    )
    out = testbot.ask("!help", user="console:newcomer")
    assert "you (console:newcomer) have no role yet" in out
    assert "!deploy" not in out


def test_whoami_shows_roles(testbot: TestBot, run_id: str) -> None:
    out = testbot.ask("!whoami", user="console:dev")
    assert "you are console:dev, with roles: developer" in out
    assert f"stacks {run_id}-app*" in out
