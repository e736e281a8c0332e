"""Alerts in the room, against the real thing: a real Alertmanager groups the alerts the
tests post to its API and delivers them to the real bot's receiver, which tells them in a
real Synapse room; silences are made from chat and read back from Alertmanager's API."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import requests

from tests.alertmanager import Alertmanager
from tests.harness import ROOT, SWARMBOT, BotEnv, free_port, wait_until
from tests.slack_fake import FakeSlack, bot_config, running_fake
from tests.synapse import MatrixUser, Synapse, wait_for_reply

pytestmark = pytest.mark.chat
TOKEN = "alert-token-for-the-tests-0123456789"


class AlertRoom:
    def __init__(
        self, env: BotEnv, am: Alertmanager, alice: MatrixUser, bot: str, room: str, port: int
    ) -> None:
        self.env, self.am, self.alice, self.bot, self.room = env, am, alice, bot, room
        self.receiver = f"http://127.0.0.1:{port}/hooks/alertmanager"

    def posts(self) -> list[dict[str, Any]]:
        """The bot's messages in the room (not edits, not thread replies), oldest first."""
        events = [
            e
            for e in self.alice.messages(self.room, 200)
            if e["sender"] == self.bot
            and e["type"] == "m.room.message"
            and "m.relates_to" not in e["content"]
        ]
        return sorted(events, key=lambda e: e["origin_server_ts"])

    def post_about(self, text: str) -> dict[str, Any] | None:
        return next((e for e in self.posts() if text in e["content"]["body"]), None)

    def now_reads(self, event: dict[str, Any]) -> str:
        """The message as it reads now: its last edit's new content, or as posted."""
        edits = [
            e
            for e in self.alice.messages(self.room, 200)
            if e["content"].get("m.relates_to", {}).get("rel_type") == "m.replace"
            and e["content"]["m.relates_to"].get("event_id") == event["event_id"]
        ]
        if not edits:
            return str(event["content"]["body"])
        last = max(edits, key=lambda e: e["origin_server_ts"])
        return str(last["content"]["m.new_content"]["body"])

    def thread(self, event: dict[str, Any]) -> str:
        return "\n".join(
            e["content"].get("body", "") for e in self.alice.thread(self.room, event["event_id"])
        )


@pytest.fixture(scope="module")
def alerts(
    workdir: Path, redis_url: str, swarm: docker.DockerClient, run_id: str, synapse: Synapse
) -> Iterator[AlertRoom]:
    env = None
    am = None
    try:
        bot = synapse.register("alertbot")
        alice = synapse.register("alertalice", admin=True)
        room = alice.create_room(invite=[bot.user_id])
        port = free_port()
        token = workdir / f"alerts-token-{run_id}"
        token.write_text(TOKEN)
        am = Alertmanager(
            workdir / f"am-{run_id}", f"http://127.0.0.1:{port}/hooks/alertmanager", token
        )
        am.start()
        env = BotEnv(
            workdir,
            redis_url,
            "alerts",
            deadline=25,
            adapters=("matrix",),
            extra_roles=f"""
            [roles.ops]
            users = ["{alice.user_id}"]
            commands = ["*"]
            stacks = ["*"]

            [matrix]
            homeserver = "{synapse.url}"
            user_id = "{bot.user_id}"
            access_token = "{bot.token}"
            rooms = ["{room}"]

            [[notices.route]]
            stacks = ["{run_id}-alnt*"]
            matrix = ["{room}"]

            [alerts]
            port = {port}
            token_file = "{token}"
            alertmanager_url = "{am.url}"
            matrix = ["{room}"]
            new_messages_per_minute = 100
            """,
        )
        env.start_worker()
        env.start_bot()
        wait_until(lambda: alice.membership(room, bot.user_id) == "join", 30, "the bot to join")
        yield AlertRoom(env, am, alice, bot.user_id, room, port)
    finally:
        if env is not None:
            env.stop_bot()
            env.stop_worker()
        if am is not None:
            am.stop()


def test_an_alert_group_is_one_message_tied_to_the_deploy_before_it(
    alerts: AlertRoom, run_id: str
) -> None:
    stack = alerts.env.add_stack(f"{run_id}-alrt", {"web": {}, "db": {}})
    asked = alerts.alice.say(alerts.room, f"!deploy {stack}")
    wait_for_reply(alerts.alice, alerts.room, asked, f"deployed {stack}")
    name = f"HighLatency{run_id.replace('-', '')}"
    started = time.time()
    alerts.am.fire({"alertname": name, "service": f"{stack}_web"}, "p99 over 2s", started)

    message = wait_until(lambda: alerts.post_about(f"FIRING: {name}"), 30, "the alert message")
    body = message["content"]["body"]
    assert f"on {stack}_web" in body and "p99 over 2s" in body, body
    # The change before it, and its undo.
    assert f"{stack}_web changed" in body and f"!deploy {stack} by" in body, body
    assert f"!rollback {stack}" in body, body

    # A second alert in the group: the same message, edited; the thread says it joined.
    alerts.am.fire({"alertname": name, "service": f"{stack}_db"}, "disk slow", started)
    wait_until(lambda: "(2 alerts)" in alerts.now_reads(message), 30, "the message edited")
    assert [e["event_id"] for e in alerts.posts() if name in e["content"]["body"]] == [
        message["event_id"]
    ]
    wait_until(lambda: "joined:" in alerts.thread(message), 30, "joined, in the thread")

    # Resolved: the message edited to say so, and after how long.
    alerts.am.resolve({"alertname": name, "service": f"{stack}_web"}, started)
    alerts.am.resolve({"alertname": name, "service": f"{stack}_db"}, started)
    wait_until(lambda: "RESOLVED" in alerts.now_reads(message), 30, "the message resolved")
    assert f"RESOLVED: {name}" in alerts.now_reads(message)
    wait_until(lambda: "resolved after" in alerts.thread(message), 30, "resolved, in the thread")
    assert [e["event_id"] for e in alerts.posts() if name in e["content"]["body"]] == [
        message["event_id"]
    ]


def test_silence_from_chat_is_real_and_stops_the_next_notification(
    alerts: AlertRoom, run_id: str
) -> None:
    quiet, loud = f"Quiet{run_id.replace('-', '')}", f"Loud{run_id.replace('-', '')}"
    asked = alerts.alice.say(alerts.room, f'!silence alertname="{quiet}" 1h testing silences')
    reply = wait_for_reply(alerts.alice, alerts.room, asked, "silenced")["content"]["body"]
    silence_id = re.findall(r"silence ([0-9a-f-]{36});", reply)[0]
    made = next(s for s in alerts.am.silences() if s["id"] == silence_id)
    assert made["createdBy"] == alerts.alice.user_id and made["comment"] == "testing silences"
    assert made["status"]["state"] == "active"

    alerts.am.fire({"alertname": quiet}, "should stay quiet")
    wait_until(
        lambda: any(
            a["labels"]["alertname"] == quiet and silence_id in a["status"]["silencedBy"]
            for a in alerts.am.alerts()
        ),
        30,
        "Alertmanager to silence it",
    )
    alerts.am.fire({"alertname": loud}, "not silenced")
    wait_until(lambda: alerts.post_about(f"FIRING: {loud}"), 30, "the unsilenced alert")
    assert alerts.post_about(quiet) is None

    asked = alerts.alice.say(alerts.room, "!silences")
    assert (
        silence_id
        in wait_for_reply(alerts.alice, alerts.room, asked, "silence")["content"]["body"]
    )
    asked = alerts.alice.say(alerts.room, f"!unsilence {silence_id}")
    wait_for_reply(alerts.alice, alerts.room, asked, "ended")
    ended = next(s for s in alerts.am.silences() if s["id"] == silence_id)
    assert ended["status"]["state"] == "expired"

    # A long silence waits for a confirmation, and makes nothing meanwhile.
    asked = alerts.alice.say(alerts.room, f'!silence alertname="{quiet}" 3d a long one')
    wait_for_reply(alerts.alice, alerts.room, asked, "!confirm")
    assert not [s for s in alerts.am.silences() if s["comment"] == "a long one"]


def test_forged_bad_and_oversized_deliveries_are_refused(alerts: AlertRoom, run_id: str) -> None:
    name = f"Forged{run_id.replace('-', '')}"
    payload = {
        "version": "4",
        "groupKey": '{}:{alertname="x"}',
        "status": "firing",
        "receiver": "swarmbot",
        "alerts": [
            {"status": "firing", "labels": {"alertname": name}, "startsAt": "2026-12-07T04:00:00Z"}
        ],
    }
    wrong = requests.post(
        alerts.receiver, json=payload, headers={"Authorization": "Bearer wrong-token"}, timeout=5
    )
    assert wrong.status_code == 401
    assert requests.post(alerts.receiver, json=payload, timeout=5).status_code == 401
    good = {"Authorization": f"Bearer {TOKEN}"}
    bad = requests.post(alerts.receiver, data=b"{not json", headers=good, timeout=5)
    assert bad.status_code == 400
    big = requests.post(alerts.receiver, data=b"x" * (2 * 1024 * 1024), headers=good, timeout=5)
    assert big.status_code == 413
    # Nothing was told; a genuine delivery right after is.
    alerts.am.fire({"alertname": f"Genuine{run_id.replace('-', '')}"})
    wait_until(lambda: alerts.post_about("FIRING: Genuine"), 30, "the genuine alert")
    assert alerts.post_about(name) is None
    asked = alerts.alice.say(alerts.room, "!audit")
    audit = wait_for_reply(alerts.alice, alerts.room, asked, "audit")["content"]["body"]
    assert "bad or missing credentials" in audit, audit


def test_a_bot_restart_edits_the_same_message_and_posts_nothing_again(
    alerts: AlertRoom, run_id: str
) -> None:
    name = f"Restart{run_id.replace('-', '')}"
    started = time.time()
    alerts.am.fire({"alertname": name, "n": "1"}, "before the restart", started)
    message = wait_until(lambda: alerts.post_about(f"FIRING: {name}"), 30, "the alert message")
    alerts.env.stop_bot()
    alerts.env.start_bot()
    alerts.am.fire({"alertname": name, "n": "2"}, "after the restart", started)
    wait_until(lambda: "(2 alerts)" in alerts.now_reads(message), 30, "the same message edited")
    assert [e["event_id"] for e in alerts.posts() if name in e["content"]["body"]] == [
        message["event_id"]
    ]


def test_swarmbot_doctor_checks_alertmanager_and_the_alert_room(alerts: AlertRoom) -> None:
    proc = subprocess.run(
        [*SWARMBOT, "doctor", "--config", str(alerts.env.config)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=alerts.env.env(),
        timeout=60,
    )
    lines = proc.stdout.splitlines()
    assert f"ok   alertmanager: {alerts.am.url}/-/ready answers (HTTP 200)" in lines, proc.stdout
    assert f"ok   notice rooms: {alerts.room}: joined" in lines, proc.stdout


def test_a_deploy_notice_is_one_message_edited_from_started_to_converged(
    alerts: AlertRoom, run_id: str
) -> None:
    stack = alerts.env.add_stack(f"{run_id}-alnt", {"web": {}})
    asked = alerts.alice.say(alerts.room, f"!deploy {stack}")
    wait_for_reply(alerts.alice, alerts.room, asked, f"deployed {stack}")
    notice = wait_until(lambda: alerts.post_about(f"{stack}: !deploy {stack}"), 30, "the notice")
    assert "started" in notice["content"]["body"]
    wait_until(lambda: f"{stack} deployed" in alerts.now_reads(notice), 30, "the notice edited")
    told = [e for e in alerts.posts() if stack in e["content"]["body"]]
    assert [e["event_id"] for e in told] == [notice["event_id"]], [
        e["content"]["body"] for e in told
    ]


CHANNEL, ALERTS = "C0OPS0001", "C0ALERTS1"


class AlertChannel:
    def __init__(self, fake: FakeSlack, env: BotEnv, am: Alertmanager) -> None:
        self.fake, self.env, self.am = fake, env, am

    def posts(self, text: str) -> list[dict[str, Any]]:
        """The bot's messages in the alerts channel (not thread replies) that said ``text``
        at any time."""
        return [
            m
            for m in list(self.fake.messages)
            if m["channel"] == ALERTS
            and not m["thread_ts"]
            and any(text in said for said in m["history"])
        ]


@pytest.fixture(scope="module")
def slack_alerts(
    workdir: Path, redis_url: str, swarm: docker.DockerClient, run_id: str
) -> Iterator[AlertChannel]:
    port = free_port()
    token = workdir / f"slack-alerts-token-{run_id}"
    token.write_text(TOKEN)
    am = Alertmanager(
        workdir / f"am-slack-{run_id}", f"http://127.0.0.1:{port}/hooks/alertmanager", token
    )
    with running_fake() as fake:
        env = BotEnv(
            workdir,
            redis_url,
            "slack-alerts",
            adapters=("slack",),
            extra_roles=bot_config(fake, channel=CHANNEL, notices=ALERTS)
            + f"""
[alerts]
port = {port}
token_file = "{token}"
slack = ["{ALERTS}"]
new_messages_per_minute = 2
""",
        )
        try:
            am.start()
            env.start_bot()
            yield AlertChannel(fake, env, am)
        finally:
            env.stop_bot()
            am.stop()


def test_in_slack_a_group_is_one_message_updated_until_resolved(
    slack_alerts: AlertChannel, run_id: str
) -> None:
    name = f"SlackDisk{run_id.replace('-', '')}"
    started = time.time()
    slack_alerts.am.fire({"alertname": name, "n": "1"}, "disk 90%", started)
    wait_until(lambda: slack_alerts.posts(f"FIRING: {name}"), 30, "the alert in Slack")
    slack_alerts.am.fire({"alertname": name, "n": "2"}, "disk 95%", started)
    wait_until(
        lambda: "(2 alerts)" in slack_alerts.posts(name)[0]["text"], 30, "chat.update of it"
    )
    for n in ("1", "2"):
        slack_alerts.am.resolve({"alertname": name, "n": n}, started)
    wait_until(
        lambda: slack_alerts.posts(name)[0]["text"].startswith(f"RESOLVED: {name}"),
        30,
        "resolved by chat.update",
    )
    [message] = slack_alerts.posts(name)

    def thread() -> str:
        return "\n".join(m["text"] for m in slack_alerts.fake.thread(ALERTS, message["ts"]))

    # The thread line goes out right after the edit it explains: waited for, not assumed.
    wait_until(lambda: "resolved after" in thread(), 30, "resolved, in the thread")
    assert "joined:" in thread(), thread()


def test_over_the_rooms_limit_new_groups_are_folded_into_one_message(
    slack_alerts: AlertChannel, run_id: str
) -> None:
    """At most two new messages a minute in this channel (the test before may have taken
    one): of a burst of five groups, at most two get their own message, the rest are one
    fold whose thread names each."""
    tag = run_id.replace("-", "")
    names = [f"Burst{tag}n{i}" for i in range(5)]
    for name in names:
        slack_alerts.am.fire({"alertname": name}, f"{name} fires")

    def placed() -> tuple[list[str], list[str], dict[str, Any]] | None:
        folds = slack_alerts.posts("more alert groups within a minute")
        if not folds:
            return None
        thread = "\n".join(m["text"] for m in slack_alerts.fake.thread(ALERTS, folds[-1]["ts"]))
        own = [n for n in names if slack_alerts.posts(f"FIRING: {n}")]
        folded = [n for n in names if f"FIRING: {n}" in thread]
        return (own, folded, folds[-1]) if len(own) + len(folded) == 5 else None

    own, folded, fold = wait_until(placed, 60, "all five groups told")
    assert len(own) <= 2 and len(folded) >= 3 and not set(own) & set(folded), (own, folded)
    assert fold["text"].startswith(f"{len(folded)} more alert groups within a minute")
    assert len(slack_alerts.posts("more alert groups within a minute")) == 1


def test_alert_commands_answer_bad_input_and_an_unreachable_alertmanager_shortly(
    workdir: Path, redis_url: str
) -> None:
    unset = BotEnv(workdir, redis_url, "alerts-unset")
    assert "alerts are not set up" in unset.ask("!alerts")
    closed = free_port()  # nothing listens there
    env = BotEnv(
        workdir,
        redis_url,
        "alerts-down",
        extra_roles=f"""
        [alerts]
        alertmanager_url = "http://127.0.0.1:{closed}"
        max_silence_seconds = 86400
        """,
    )
    assert f"cannot reach Alertmanager at http://127.0.0.1:{closed}" in env.ask("!alerts")
    assert "cannot reach Alertmanager" in env.ask('!silence a="b" 1h why')
    assert "cannot be read" in env.ask("!silence nonsense 1h why")
    assert "is not a duration" in env.ask('!silence a="b" soon why')
    assert "at least a minute" in env.ask('!silence a="b" 30s why')
    assert "at most 1d" in env.ask('!silence a="b" 2d why')  # refused, not confirmed first
    assert "!confirm" in env.ask('!silence a="b" 5h why')  # over 4h: confirmed first
    assert "missing <reason...>" in env.ask('!silence a="b" 1h')
    assert "is not a silence ID" in env.ask("!unsilence 42")
