"""The bot in Slack: the real slack-bolt stack against a local fake that speaks Slack's
wire protocol (Web API + Socket Mode), with the real worker, Redis and swarm behind it."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import requests

from tests.harness import BotEnv, free_port, wait_until
from tests.slack_fake import (
    APP_TOKEN,
    BOT_ID,
    BOT_TOKEN,
    BOT_USER,
    SIGNING_SECRET,
    FakeSlack,
    bot_config,
    running_fake,
    wait_for_reply,
)

pytestmark = pytest.mark.chat

CHANNEL, OTHER_CHANNEL, SECOND = "C0OPS0001", "C0RANDOM1", "C0SECOND1"
ALICE, BOB, CAROL = "UALICE001", "UBOB00001", "UCAROL001"


class Chat:
    def __init__(self, fake: FakeSlack, env: BotEnv) -> None:
        self.fake, self.env = fake, env

    def settle(self) -> None:
        """Two commands answered in turn: what was delivered before has been handled."""
        for _ in range(2):
            ts = self.fake.say(CHANNEL, ALICE, "!whoami")
            wait_for_reply(self.fake, CHANNEL, ts, "you are")


@pytest.fixture(scope="module")
def slack(
    workdir: Path, redis_url: str, swarm: docker.DockerClient, run_id: str
) -> Iterator[Chat]:
    with running_fake() as fake:
        env = BotEnv(
            workdir,
            redis_url,
            "slack",
            deadline=25,
            adapters=("slack",),
            # SECOND: a second channel the bot serves (for one channel's limits not to
            # hold up another's answers).
            extra_roles=bot_config(fake, (ALICE,), CHANNEL, viewers=(CAROL,), notices=SECOND)
            + f"""
[[notices.route]]
stacks = ["{run_id}-slnt*"]
slack = ["{SECOND}"]
""",
        )
        try:
            env.start_worker()
            env.start_bot()
            yield Chat(fake, env)
        finally:
            env.stop_bot()
            env.stop_worker()


def test_queued_is_said_at_once_only_for_a_job_that_waits(slack: Chat, run_id: str) -> None:
    """A job behind another on its stack is told so at once; a job that answers quickly
    gets its answer alone, with no "queued as job N" before it."""
    stack = slack.env.add_stack(f"{run_id}-slq", {"slow": {"update_config": {"monitor": "5s"}}})
    first = slack.fake.say(CHANNEL, ALICE, f"!deploy {stack}")
    wait_until(lambda: slack.fake.thread(CHANNEL, first), 15, "the first deploy under way")
    second = slack.fake.say(CHANNEL, ALICE, f"!deploy {stack}")
    wait_for_reply(slack.fake, CHANNEL, second, "queued behind job")
    said = [t for m in slack.fake.thread(CHANNEL, first) for t in m["history"]]
    assert not any(f"deployed {stack}" in t for t in said), "told only after the wait ended"
    wait_for_reply(slack.fake, CHANNEL, first, f"deployed {stack}")
    wait_for_reply(slack.fake, CHANNEL, second, "already matches its file")
    quick = slack.fake.say(CHANNEL, ALICE, "!ping")
    wait_for_reply(slack.fake, CHANNEL, quick, "pong from worker")
    wait_until(
        lambda: "white_check_mark" in slack.fake.reactions_on(CHANNEL, quick), 15, "✅ on !ping"
    )
    texts = [m["history"][0] for m in slack.fake.thread(CHANNEL, quick)]
    assert len(texts) == 1 and texts[0].startswith("pong from worker"), texts


def test_services_in_thread_with_block_kit_table_and_reactions(slack: Chat, run_id: str) -> None:
    stack = slack.env.add_stack(f"{run_id}-slls", {"web": {}})  # a table needs a service
    assert f"deployed {stack}" in slack.env.chat(f"!deploy {stack}")
    ts = slack.fake.say(CHANNEL, ALICE, "!services")
    reply = wait_for_reply(slack.fake, CHANNEL, ts, "REPLICAS")
    sections = [b["text"]["text"] for b in reply["blocks"] if b["type"] == "section"]
    assert any(s.startswith("```\n") and "REPLICAS" in s for s in sections), sections
    wait_until(
        lambda: slack.fake.reactions_on(CHANNEL, ts) == {"eyes", "white_check_mark"},
        15,
        "reactions",
    )


def test_deploy_updates_one_progress_message(
    slack: Chat, run_id: str, swarm: docker.DockerClient
) -> None:
    stack = slack.env.add_stack(f"{run_id}-sl", {"web": {"replicas": 2}})
    ts = slack.fake.say(CHANNEL, ALICE, f"!deploy {stack}")
    wait_for_reply(slack.fake, CHANNEL, ts, f"deployed {stack}: 1 service converged")
    thread = slack.fake.thread(CHANNEL, ts)
    assert len(thread) == 2, [m["text"] for m in thread]
    progress = thread[0]
    assert progress["edits"] and any(re.search(r"web \d/2", e) for e in progress["edits"]), (
        progress
    )
    wait_until(lambda: "white_check_mark" in slack.fake.reactions_on(CHANNEL, ts), 15, "✅")
    tasks = swarm.services.get(f"{stack}_web").tasks(filters={"desired-state": "running"})
    assert sum(t["Status"]["State"] == "running" for t in tasks) == 2


def test_a_deploy_notice_is_one_message_updated_from_started_to_converged(
    slack: Chat, run_id: str
) -> None:
    stack = slack.env.add_stack(f"{run_id}-slnt", {"web": {}})
    ts = slack.fake.say(CHANNEL, ALICE, f"!deploy {stack}")
    wait_for_reply(slack.fake, CHANNEL, ts, f"deployed {stack}")

    def told() -> list[dict[str, object]]:
        return [
            m
            for m in list(slack.fake.messages)
            if m["channel"] == SECOND and stack in m["history"][0]
        ]

    wait_until(
        lambda: told() and f"{stack} deployed" in str(told()[0]["text"]), 30, "the notice updated"
    )
    [message] = told()
    assert "started" in message["history"][0], message["history"]
    assert f"{stack} deployed" in message["text"] and message["edits"], message["history"]


def test_a_change_by_hand_is_one_message_updated_when_it_has_settled(
    slack: Chat, run_id: str, swarm: docker.DockerClient
) -> None:
    stack = slack.env.add_stack(f"{run_id}-slnthand", {"web": {}})
    ts = slack.fake.say(CHANNEL, ALICE, f"!deploy {stack}")
    wait_for_reply(slack.fake, CHANNEL, ts, f"deployed {stack}")
    swarm.services.get(f"{stack}_web").scale(2)  # by hand, outside the bot

    def told() -> list[dict[str, Any]]:
        return [
            m
            for m in list(slack.fake.messages)
            if m["channel"] == SECOND
            and "outside the bot" in m["history"][0]
            and stack in m["history"][0]
        ]

    wait_until(
        lambda: told() and f"{stack}: changed outside the bot (" in told()[0]["text"],
        60,
        "the outcome",
    )
    [message] = told()
    assert "being changed outside the bot" in message["history"][0], message["history"]
    assert f"{stack}_web" in message["text"] and "replicas 1 -&gt; 2" in message["text"], message


def test_unpaired_surrogate_is_refused_and_the_next_command_runs(slack: Chat) -> None:
    """A message whose JSON carries a lone surrogate (``\\ud800``) cannot be encoded for
    Redis or the log: it is refused with a clear message, and the bot carries on."""
    ts = slack.fake.say(CHANNEL, ALICE, "!services a\ud800b")
    wait_for_reply(slack.fake, CHANNEL, ts, "not valid UTF-8 text")
    ts = slack.fake.say(CHANNEL, ALICE, "!whoami")
    wait_for_reply(slack.fake, CHANNEL, ts, f"you are slack:{ALICE}")


def test_mention_runs_the_command(slack: Chat) -> None:
    ts = slack.fake._next_ts()
    slack.fake.post_event(
        {
            "type": "app_mention",
            "channel": CHANNEL,
            "user": ALICE,
            "ts": ts,
            "text": f"<@{BOT_USER}> whoami",
        }
    )
    wait_for_reply(slack.fake, CHANNEL, ts, f"you are slack:{ALICE}")


def test_slash_command_is_acknowledged_at_once_and_answered(slack: Chat) -> None:
    envelope = slack.fake.slash(CHANNEL, ALICE, "/swarm", "stacks")
    wait_until(
        lambda: envelope in slack.fake.acks, 3, "the slash command's ack (Slack allows 3 s)"
    )
    root = wait_until(
        lambda: next((m for m in slack.fake.messages if "ran `/swarm stacks`" in m["text"]), None),
        15,
        "root",
    )
    wait_for_reply(slack.fake, CHANNEL, root["ts"], "DEPLOYED")


def test_refusals_queue_nothing(slack: Chat) -> None:
    jobs = slack.env.queued_jobs()
    ts = slack.fake.say(CHANNEL, BOB, "!deploy anything")
    wait_for_reply(slack.fake, CHANNEL, ts, f"refused: you (slack:{BOB}) have no role here")
    wait_until(lambda: "x" in slack.fake.reactions_on(CHANNEL, ts), 15, "❌")
    ts = slack.fake.say(CHANNEL, CAROL, "!restart web")
    wait_for_reply(slack.fake, CHANNEL, ts, "do not include the command `restart`")
    assert slack.env.queued_jobs() == jobs


def test_retried_delivery_runs_once(slack: Chat) -> None:
    jobs = slack.env.queued_jobs()
    ts = slack.fake._next_ts()
    # A queued command with a one-message answer (a table as long as the swarm's stacks is
    # split into several messages, which would read as several answers here).
    event = {"type": "message", "channel": CHANNEL, "user": ALICE, "text": "!ping", "ts": ts}
    event_id = slack.fake.post_event(event)
    slack.fake.post_event(event, event_id=event_id, retry_attempt=1)
    slack.fake.post_event(event, event_id=event_id, retry_attempt=2)
    wait_for_reply(slack.fake, CHANNEL, ts, "pong from worker")
    slack.settle()
    assert slack.env.queued_jobs() == jobs + 1
    answers = [m for m in slack.fake.thread(CHANNEL, ts) if "pong from worker" in m["text"]]
    assert len(answers) == 1, answers


def test_bot_edited_and_foreign_messages_never_run(slack: Chat, run_id: str) -> None:
    jobs = slack.env.queued_jobs()
    before = len(slack.fake.acks)
    ts = slack.fake._next_ts()
    slack.fake.post_event(
        {
            "type": "message",
            "channel": CHANNEL,
            "bot_id": "BOTHER001",
            "text": "!services",
            "ts": ts,
        }
    )
    slack.fake.post_event(
        {
            "type": "message",
            "channel": CHANNEL,
            "user": BOT_USER,
            "bot_id": BOT_ID,
            "text": "!services",
            "ts": slack.fake._next_ts(),
        }
    )
    slack.fake.post_event(
        {
            "type": "message",
            "subtype": "message_changed",
            "channel": CHANNEL,
            "ts": slack.fake._next_ts(),
            "message": {"user": ALICE, "text": f"!deploy {run_id}-sl", "ts": ts},
        }
    )
    slack.fake.say(OTHER_CHANNEL, ALICE, "!services")
    wait_until(lambda: len(slack.fake.acks) >= before + 4, 15, "the four envelopes acknowledged")
    slack.settle()
    assert slack.env.queued_jobs() == jobs
    assert not slack.fake.thread(CHANNEL, ts)
    assert not [m for m in slack.fake.messages if m["channel"] == OTHER_CHANNEL]


def test_rate_limit_is_honoured(slack: Chat) -> None:
    calls = slack.fake.count("chat.postMessage")
    slack.fake.rate_limit["chat.postMessage"] = 2
    ts = slack.fake.say(CHANNEL, ALICE, "!whoami")
    wait_for_reply(slack.fake, CHANNEL, ts, "you are", timeout=30)
    assert slack.fake.count("chat.postMessage") >= calls + 3  # two 429s, then the post


def limited_for(slack: Chat, channel: str, seconds: float, retry_after: int) -> int:
    """Every write to ``channel`` gets a 429 for ``seconds``; returns where attempts start."""
    start = len(slack.fake.attempts)
    slack.fake.channel_limit[channel] = (time.monotonic() + seconds, retry_after)
    return start


def retried_too_soon(slack: Chat, channel: str, start: int, retry_after: int) -> list[float]:
    """Gaps between a 429 on ``channel`` and the next write there shorter than Retry-After."""
    tries = [a for a in slack.fake.attempts[start:] if a[1] == channel]
    return [
        round(b[2] - a[2], 2)
        for a, b in itertools.pairwise(tries)
        if a[3] == 429 and b[2] - a[2] < retry_after - 0.05
    ]


def test_a_rate_limited_channel_gets_each_answer_once_and_other_channels_at_once(
    slack: Chat,
) -> None:
    """The probe: a channel answering 429 (Retry-After 1) for 12 s. An answer the bot
    computes itself, a slash command and a job's answer all arrive, once each, retried no
    sooner than Retry-After; the other channel is answered meanwhile."""
    start = limited_for(slack, CHANNEL, 12, 1)
    whoami = slack.fake.say(CHANNEL, ALICE, "!whoami")
    slack.fake.slash(CHANNEL, ALICE, "/swarm", "whoami")
    ping = slack.fake.say(CHANNEL, ALICE, "!ping")
    elsewhere = slack.fake.say(SECOND, ALICE, "!whoami")
    wait_for_reply(slack.fake, SECOND, elsewhere, "you are", timeout=5)
    until, _ = slack.fake.channel_limit[CHANNEL]
    assert time.monotonic() < until, "the other channel waited for this one's limit"
    wait_for_reply(slack.fake, CHANNEL, whoami, "you are", timeout=40)
    wait_for_reply(slack.fake, CHANNEL, ping, "pong", timeout=40)
    echo = wait_until(
        lambda: [m for m in slack.fake.messages if "ran `/swarm whoami`" in m.get("text", "")],
        40,
        "the slash command's echo",
    )
    wait_for_reply(slack.fake, CHANNEL, echo[0]["ts"], "you are", timeout=40)
    assert len([m for m in slack.fake.thread(CHANNEL, whoami) if "you are" in m["text"]]) == 1
    assert len([m for m in slack.fake.thread(CHANNEL, ping) if "pong" in m["text"]]) == 1
    assert retried_too_soon(slack, CHANNEL, start, 1) == []


def test_reconnects_after_the_websocket_drops(slack: Chat) -> None:
    connections = slack.fake.connections
    slack.fake.drop_connection()
    wait_until(
        lambda: slack.fake.connections > connections and slack.fake.connected(), 60, "a reconnect"
    )
    ts = slack.fake.say(CHANNEL, ALICE, "!whoami")
    wait_for_reply(slack.fake, CHANNEL, ts, "you are")


@pytest.fixture(scope="module")
def http_slack(
    workdir: Path, redis_url: str, swarm: docker.DockerClient
) -> Iterator[tuple[FakeSlack, BotEnv, str]]:
    port = free_port()
    with running_fake() as fake:
        env = BotEnv(
            workdir,
            redis_url,
            "slack-http",
            adapters=("slack",),
            extra_roles=bot_config(
                fake, (ALICE,), CHANNEL, viewers=(CAROL,), mode="http", http_port=port
            ),
        )
        try:
            env.start_worker()
            env.start_bot()
            yield fake, env, f"http://127.0.0.1:{port}/slack/events"
        finally:
            env.stop_bot()
            env.stop_worker()


def signed_post(
    url: str, body: dict, secret: str = SIGNING_SECRET, age: float = 0
) -> requests.Response:
    raw = json.dumps(body)
    stamp = str(int(time.time() - age))
    signature = (
        "v0=" + hmac.new(secret.encode(), f"v0:{stamp}:{raw}".encode(), hashlib.sha256).hexdigest()
    )
    headers = {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": signature,
    }
    return requests.post(url, data=raw, headers=headers, timeout=10)


def test_http_mode_verifies_signatures(http_slack: tuple[FakeSlack, BotEnv, str]) -> None:
    fake, env, url = http_slack
    jobs = env.queued_jobs()
    ts = fake._next_ts()
    event = fake.event_payload(
        {"type": "message", "channel": CHANNEL, "user": ALICE, "text": "!stacks", "ts": ts},
        "EvHTTP0001",
    )
    assert signed_post(url, event, secret="wrong-secret-wrong-secret-wrong!").status_code == 401
    assert signed_post(url, event, age=600).status_code == 401  # stale: a replayed request
    assert env.queued_jobs() == jobs
    assert signed_post(url, event).status_code == 200
    wait_for_reply(fake, CHANNEL, ts, "DEPLOYED")
    assert env.queued_jobs() == jobs + 1


@pytest.mark.parametrize(("user", "allowed"), [(ALICE, True), (CAROL, True), (BOB, False)])
@pytest.mark.parametrize("channel", [CHANNEL, OTHER_CHANNEL])
def test_role_by_channel(slack: Chat, user: str, allowed: bool, channel: str) -> None:
    """Every role in the served channel and in another one: outside, nobody is answered."""
    jobs = slack.env.queued_jobs()
    ts = slack.fake.say(channel, user, "!stacks" if user != CAROL else "!services")
    if channel == OTHER_CHANNEL:
        slack.settle()
        assert not slack.fake.thread(channel, ts)
        assert slack.env.queued_jobs() == jobs
    elif allowed:
        wait_for_reply(slack.fake, channel, ts, "STACK" if user != CAROL else "SERVICE")
        assert slack.env.queued_jobs() == jobs + 1
    else:
        wait_for_reply(slack.fake, channel, ts, "refused")
        assert slack.env.queued_jobs() == jobs


def test_no_secret_reaches_the_logs(slack: Chat) -> None:
    logs = slack.env.bot_log.read_text() + slack.env.worker_log.read_text()
    for secret in (BOT_TOKEN, APP_TOKEN, SIGNING_SECRET, slack.env.secret):
        assert secret not in logs
