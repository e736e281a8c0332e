"""The bot in a real Matrix room: a real Synapse, the real bot and worker processes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import docker
import pytest
import requests

from tests.harness import BotEnv, wait_until
from tests.synapse import MatrixUser, Synapse, settle, wait_for_reply

pytestmark = pytest.mark.chat


class Room:
    """The test conversation: homeserver, people, rooms, and the configured bot."""

    def __init__(
        self,
        synapse: Synapse,
        env: BotEnv,
        bot_id: str,
        alice: MatrixUser,
        bob: MatrixUser,
        carol: MatrixUser,
        room: str,
        encrypted_room: str,
        locked_room: str,
    ) -> None:
        self.synapse, self.env, self.bot_id = synapse, env, bot_id
        self.alice, self.bob, self.carol = alice, bob, carol
        self.id, self.encrypted_id, self.locked_id = room, encrypted_room, locked_room

    def bot_replies(self, root: str) -> list[dict]:
        return [e for e in self.alice.thread(self.id, root) if e["sender"] == self.bot_id]


@pytest.fixture(scope="module")
def matrix(
    workdir: Path, redis_url: str, swarm: docker.DockerClient, run_id: str, synapse: Synapse
) -> Iterator[Room]:
    env = None
    try:
        bot = synapse.register("swarmbot")
        alice = synapse.register("alice", admin=True)
        bob = synapse.register("bob")
        carol = synapse.register("carol")
        room = alice.create_room(invite=[bot.user_id, bob.user_id, carol.user_id])
        bob.join(room)
        carol.join(room)
        encrypted = alice.create_room(invite=[bot.user_id], encrypted=True)
        # Configured for notices, but the bot was never invited: it may not post there.
        locked = alice.create_room(invite=[])
        # Notices routed by the room's alias (resolved by the bot at start).
        alias = f"#notices-{run_id}:{alice.user_id.split(':', 1)[1]}"
        alice.api("PUT", f"/v3/directory/room/{quote(alias)}", json={"room_id": room})
        env = BotEnv(
            workdir,
            redis_url,
            "matrix",
            deadline=25,
            adapters=("matrix",),
            extra_roles=f"""
            [roles.ops]
            users = ["{alice.user_id}"]
            commands = ["*"]
            stacks = ["*"]

            [roles.viewer]
            users = ["{carol.user_id}"]
            commands = ["services", "ps"]
            stacks = ["*"]

            [matrix]
            homeserver = "{synapse.url}"
            user_id = "{bot.user_id}"
            access_token = "{bot.token}"
            rooms = ["{room}", "{encrypted}", "{locked}"]

            [[notices.route]]
            stacks = ["{run_id}-mxlk*"]
            matrix = ["{locked}"]

            [[notices.route]]
            stacks = ["{run_id}-mxal*"]
            matrix = ["{alias}"]
            """,
        )
        env.start_worker()
        env.start_bot()
        wait_until(lambda: alice.membership(room, bot.user_id) == "join", 30, "the bot to join")
        yield Room(synapse, env, bot.user_id, alice, bob, carol, room, encrypted, locked)
    finally:
        if env is not None:
            env.stop_bot()
            env.stop_worker()


def test_services_answered_in_thread_as_an_html_table(matrix: Room, run_id: str) -> None:
    stack = matrix.env.add_stack(f"{run_id}-mxls", {"web": {}})  # a table needs a service
    assert f"deployed {stack}" in matrix.env.chat(f"!deploy {stack}")
    # Its own stack: the whole swarm's services (other tests' too) could take two messages.
    command = matrix.alice.say(matrix.id, f"!services {stack}")
    reply = wait_for_reply(matrix.alice, matrix.id, command, "REPLICAS")
    assert reply["sender"] == matrix.bot_id
    body = reply["content"]
    assert body["msgtype"] == "m.notice"
    assert body["format"] == "org.matrix.custom.html"
    assert "<table>" in body["formatted_body"] and "<th>REPLICAS</th>" in body["formatted_body"]
    relation = body["m.relates_to"]
    assert relation["rel_type"] == "m.thread" and relation["event_id"] == command
    wait_until(
        lambda: matrix.alice.reactions(matrix.id, command, matrix.bot_id) == {"👀", "✅"},
        15,
        "👀 and ✅ on the command",
    )
    # A job that answers at once is answered, not first announced as "queued as job N".
    bodies = [r["content"]["body"] for r in matrix.bot_replies(command)]
    assert len(bodies) == 1 and "REPLICAS" in bodies[0], bodies


def test_a_notices_route_may_name_a_room_by_its_alias(matrix: Room, run_id: str) -> None:
    stack = matrix.env.add_stack(f"{run_id}-mxal", {"web": {}})
    assert f"deployed {stack}" in matrix.env.chat(f"!deploy {stack}")

    def told() -> list[str]:
        return [
            e["content"]["body"]
            for e in matrix.alice.messages(matrix.id)
            if e["sender"] == matrix.bot_id
            and f"{stack} deployed" in e.get("content", {}).get("body", "")
        ]

    assert wait_until(told, 30, "the notice in the aliased room")


def test_the_answer_comes_before_its_mark(matrix: Room) -> None:
    """In the room's own order: the answer, then ✅ (sent side by side, ✅ often came
    first), for a job that answers at once and for one answered by the bot itself."""
    for text, answer, mark in (("!ping", "pong", "✅"), ("!nonsense", "unknown command", "❌")):
        command = matrix.alice.say(matrix.id, text)
        reply = wait_for_reply(matrix.alice, matrix.id, command, answer)
        wait_until(
            lambda command=command, mark=mark: (
                mark in matrix.alice.reactions(matrix.id, command, matrix.bot_id)
            ),
            15,
            f"{mark} on {text}",
        )
        order = [e["event_id"] for e in reversed(matrix.alice.messages(matrix.id))]
        reaction = next(
            e["event_id"]
            for e in matrix.alice.relations(matrix.id, command, "m.annotation")
            if e["content"]["m.relates_to"]["key"] == mark
        )
        assert order.index(reply["event_id"]) < order.index(reaction), text


def test_deploy_edits_one_progress_message_and_deploys(
    matrix: Room, run_id: str, swarm: docker.DockerClient
) -> None:
    stack = matrix.env.add_stack(f"{run_id}-mx", {"web": {"replicas": 2}, "api": {}})
    command = matrix.alice.say(matrix.id, f"!deploy {stack}")
    final = wait_for_reply(
        matrix.alice, matrix.id, command, f"deployed {stack}: 2 services converged"
    )
    assert "<table>" in final["content"]["formatted_body"]
    replies = matrix.bot_replies(command)
    progress = replies[0]
    # "queued as job N" (the job had not answered after a second) or the first progress
    # line, whichever came first; then edited in place with the progress.
    first = progress["content"]["body"]
    assert first.startswith("queued as job") or re.search(r"(api|web) \d/\d", first), first
    edits = matrix.alice.relations(matrix.id, progress["event_id"], "m.replace")
    assert edits, "progress was posted as new messages instead of edits"
    assert any(re.search(r"(api|web) \d/\d", e["content"]["m.new_content"]["body"]) for e in edits)
    assert len(replies) == 2, [r["content"]["body"] for r in replies]
    wait_until(
        lambda: matrix.alice.reactions(matrix.id, command, matrix.bot_id) == {"👀", "✅"},
        15,
        "👀 and ✅ on the command",
    )
    running = swarm.services.get(f"{stack}_web").tasks(filters={"desired-state": "running"})
    assert sum(t["Status"]["State"] == "running" for t in running) == 2


def test_a_notices_room_that_refuses_the_bot_holds_up_nothing(matrix: Room, run_id: str) -> None:
    """Notices go to a room the bot may not post in (M_FORBIDDEN): the deploy is answered,
    its thread says where its notice could not go, and the next command is answered at
    once, not after minutes of retries."""
    stack = matrix.env.add_stack(f"{run_id}-mxlk", {"web": {}})
    command = matrix.alice.say(matrix.id, f"!deploy {stack}")
    wait_for_reply(matrix.alice, matrix.id, command, f"deployed {stack}")
    told = wait_for_reply(matrix.alice, matrix.id, command, "could not be posted")
    assert f"to {matrix.locked_id}: M_FORBIDDEN" in told["content"]["body"], told["content"]
    ping = matrix.alice.say(matrix.id, "!ping")
    wait_for_reply(matrix.alice, matrix.id, ping, "pong", timeout=10)
    log = matrix.env.bot_log.read_text()
    # Two notices (the deploy's "started" message and its outcome), each logged once:
    # neither was retried.
    assert log.count(f"cannot post to {matrix.locked_id}") == 2, log[-3000:]
    assert "giving up" not in log and "will retry" not in log


def test_failed_deploy_gets_a_cross(matrix: Room, run_id: str) -> None:
    stack = matrix.env.add_stack(f"{run_id}-mxbad", {"bad": {"command": ["false"]}})
    command = matrix.alice.say(matrix.id, f"!deploy {stack}")
    reply = wait_for_reply(matrix.alice, matrix.id, command, "FAILED")
    assert "<strong>" in reply["content"]["formatted_body"]
    wait_until(lambda: "❌" in matrix.alice.reactions(matrix.id, command, matrix.bot_id), 15, "❌")


def test_unknown_user_and_missing_role_are_refused(matrix: Room) -> None:
    jobs = matrix.env.queued_jobs()
    command = matrix.bob.say(matrix.id, "!services")
    wait_for_reply(
        matrix.alice, matrix.id, command, "refused: you (@bob:localhost) have no role here"
    )
    command = matrix.carol.say(matrix.id, "!restart web")
    wait_for_reply(matrix.alice, matrix.id, command, "do not include the command `restart`")
    wait_until(lambda: "❌" in matrix.alice.reactions(matrix.id, command, matrix.bot_id), 15, "❌")
    assert matrix.env.queued_jobs() == jobs


def test_edits_replies_and_notices_never_run_anything(matrix: Room, run_id: str) -> None:
    jobs = matrix.env.queued_jobs()
    old = matrix.alice.say(matrix.id, "hello")
    edit = matrix.alice.edit(matrix.id, old, f"!deploy {run_id}-mx")
    quote = matrix.alice.say(
        matrix.id,
        f"> <@alice:localhost> !deploy {run_id}-mx\n\nthat went well",
        **{"m.relates_to": {"m.in_reply_to": {"event_id": old}}},
    )
    notice = matrix.alice.send(matrix.id, {"msgtype": "m.notice", "body": "!services"})
    settle(matrix.alice, matrix.id)
    assert matrix.env.queued_jobs() == jobs
    for event in (old, edit, quote, notice):
        assert not matrix.bot_replies(event)


def test_restarted_bot_answers_missed_commands_once_and_reruns_nothing(matrix: Room) -> None:
    # !ping: a queued command with a one-message answer (a long table takes several).
    before = matrix.alice.say(matrix.id, "!ping")
    wait_for_reply(matrix.alice, matrix.id, before, "pong from worker")
    matrix.env.stop_bot()
    jobs = matrix.env.queued_jobs()
    missed = matrix.alice.say(matrix.id, "!ping")
    matrix.env.start_bot()
    wait_for_reply(matrix.alice, matrix.id, missed, "pong from worker")
    settle(matrix.alice, matrix.id)
    assert matrix.env.queued_jobs() == jobs + 1
    for command in (before, missed):
        results = [
            r for r in matrix.bot_replies(command) if "pong from worker" in r["content"]["body"]
        ]
        assert len(results) == 1, [r["content"]["body"] for r in matrix.bot_replies(command)]


def test_bot_survives_a_homeserver_restart(matrix: Room) -> None:
    log_size = matrix.env.bot_log.stat().st_size
    matrix.synapse.stop()
    wait_until(
        lambda: b"homeserver unreachable" in matrix.env.bot_log.read_bytes()[log_size:],
        60,
        "the bot to notice the outage",
    )
    matrix.synapse.start()
    command = matrix.alice.say(matrix.id, "!services")
    wait_for_reply(matrix.alice, matrix.id, command, "REPLICAS", timeout=90)
    assert matrix.env.bot is not None and matrix.env.bot.poll() is None


def test_encrypted_room_is_announced_once(matrix: Room) -> None:
    room = matrix.encrypted_id
    wait_until(
        lambda: matrix.alice.membership(room, matrix.bot_id) == "join", 30, "the bot to join"
    )
    fake = {
        "algorithm": "m.megolm.v1.aes-sha2",
        "ciphertext": "AwgA",
        "session_id": "x",
        "device_id": "D",
        "sender_key": "k",
    }
    matrix.alice.send(room, fake, kind="m.room.encrypted")

    def warnings() -> list[dict]:
        return [
            e
            for e in matrix.alice.messages(room)
            if e["sender"] == matrix.bot_id
            and "cannot read encrypted" in e.get("content", {}).get("body", "")
        ]

    wait_until(warnings, 30, "the warning in the encrypted room")
    matrix.alice.send(room, fake, kind="m.room.encrypted")
    settle(matrix.alice, matrix.id)
    assert len(warnings()) == 1


def test_invites_to_other_rooms_are_rejected(matrix: Room) -> None:
    other = matrix.alice.create_room(invite=[matrix.bot_id])
    wait_until(
        lambda: matrix.alice.membership(other, matrix.bot_id) == "leave", 30, "the invite rejected"
    )


def test_rate_limited_bot_waits_and_answers_everything(matrix: Room) -> None:
    """Synapse answers M_LIMIT_EXCEEDED with retry_after_ms; every command is still answered."""
    url = f"{matrix.synapse.url}/_synapse/admin/v1/users/{matrix.bot_id}/override_ratelimit"

    headers = {"Authorization": f"Bearer {matrix.alice.token}"}
    requests.post(
        url, json={"messages_per_second": 2, "burst_count": 2}, headers=headers, timeout=10
    ).raise_for_status()
    log_size = matrix.env.bot_log.stat().st_size
    try:
        commands = [matrix.alice.say(matrix.id, "!whoami") for _ in range(4)]
        for command in commands:
            wait_for_reply(matrix.alice, matrix.id, command, "you are", timeout=60)
    finally:
        requests.delete(url, headers=headers, timeout=10).raise_for_status()
    assert b"ratelimited" in matrix.env.bot_log.read_bytes()[log_size:]


def test_no_secret_reaches_the_logs(matrix: Room) -> None:
    logs = matrix.env.bot_log.read_text() + matrix.env.worker_log.read_text()
    config = matrix.env.config.read_text()
    token = re.search(r'access_token = "([^"]+)"', config).group(1)
    assert token not in logs
    assert matrix.env.secret not in logs
