"""Deploy notices in a real (fake-Slack) channel: bot deploys, outside changes, failures,
each told exactly once (across a dockerd restart: tests/test_docker_restarts.py)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import docker
import pytest
import requests

from bot.chat.adapters.slack_render import unescape
from tests.harness import TEST_IMAGE, BotEnv, free_port, wait_until
from tests.slack_fake import FakeSlack, bot_config, running_fake, wait_for_reply

pytestmark = pytest.mark.swarm

OPS, NOTICES, ALICE = "C0OPS0001", "C0NOTICE1", "UALICE001"


class Room:
    def __init__(self, env: BotEnv, fake: FakeSlack, health_port: int, worker_port: int) -> None:
        self.env, self.fake, self.health_port = env, fake, health_port
        self.worker_port = worker_port

    def looks(self) -> dict[str, float]:
        """The worker's notice-look counters, as Prometheus scrapes them."""
        text = requests.get(f"http://127.0.0.1:{self.worker_port}/metrics", timeout=5).text
        found = re.findall(
            r'^swarmbot_notice_(looks|services_read)_total\{kind="(\w+)"\} (\S+)$', text, re.M
        )
        return {f"{what}:{kind}": float(value) for what, kind, value in found}

    def health(self) -> dict:
        return requests.get(f"http://127.0.0.1:{self.health_port}/healthz", timeout=5).json()

    def metrics(self) -> str:
        return requests.get(f"http://127.0.0.1:{self.health_port}/metrics", timeout=5).text

    def notices(self, about: str) -> list[str]:
        """Notices in the notices channel that mention ``about``, as a person reads them."""
        texts = [unescape(m["text"]) for m in self.fake.messages if m["channel"] == NOTICES]
        return [t for t in texts if about in t]

    def refreshes(self) -> int:
        return int(self.env.redis().get(f"{self.env.prefix}:notice:refreshes") or 0)

    def settle(self) -> None:
        """Two more looks at the swarm: anything still to be told has been told by then."""
        start = self.refreshes()
        wait_until(lambda: self.refreshes() >= start + 2, 30, "the watcher to look twice more")


@contextmanager
def notice_room(
    workdir: Path, redis_url: str, name: str, stacks: str, quiet: float, worker: str
) -> Iterator[Room]:
    """A worker whose notices about ``stacks`` go to the fake NOTICES channel, and the bot
    that posts them; ready once the watcher has had its first look."""
    with running_fake() as fake:
        health_port, worker_port = free_port(), free_port()
        env = BotEnv(
            workdir,
            redis_url,
            name,
            deadline=30,
            adapters=("slack",),
            extra_roles=bot_config(fake, (ALICE,), OPS, notices=NOTICES)
            + f"""

            [health]
            bot_port = {health_port}
            worker_port = {worker_port}

            [notices]
            quiet_seconds = {quiet}
            poll_seconds = 2

            [[notices.route]]
            stacks = ["{stacks}"]
            slack = ["{NOTICES}"]
            """,
        )
        env.start_worker(worker)
        env.start_bot()
        try:
            r = Room(env, fake, health_port, worker_port)
            wait_until(lambda: r.refreshes() >= 1, 30, "the watcher's first look")
            yield r
        finally:
            env.stop_bot()
            env.stop_worker()


@pytest.fixture(scope="module")
def room(workdir: Path, redis_url: str, swarm: docker.DockerClient, run_id: str) -> Iterator[Room]:
    with notice_room(workdir, redis_url, "notices", f"{run_id}-nt*", 1, "test-worker") as r:
        yield r


def test_bot_deploy_is_told_once_with_who_what_and_outcome(room: Room, run_id: str) -> None:
    stack = room.env.add_stack(f"{run_id}-nt-app", {"svc": {"replicas": 2}})
    ts = room.fake.say(OPS, ALICE, f"!deploy {stack}")
    wait_for_reply(room.fake, OPS, ts, f"deployed {stack}")
    notice = wait_until(lambda: room.notices(f"{stack} deployed"), 30, "the deploy notice")[0]
    assert f"by slack:{ALICE} via !deploy {stack}, job " in notice and "converged in" in notice, (
        notice
    )
    assert f"{stack}_svc: new" in notice
    room.settle()
    assert len(room.notices(stack)) == 1, room.notices(stack)


def test_the_bots_own_changes_are_told_once_each_and_nothing_false(
    room: Room, run_id: str, swarm: docker.DockerClient
) -> None:
    """Scale up, scale down, restart and undeploy by the bot: one notice each, saying who
    did it; never also "outside the bot", "removed outside the bot" or "unhealthy" while
    tasks are only being scheduled or stopped."""
    stack = room.env.add_stack(f"{run_id}-nt-own", {"svc": {}})
    service = f"{stack}_svc"

    def say(command: str, answer: str) -> None:
        ts = room.fake.say(OPS, ALICE, command)
        reply = wait_for_reply(room.fake, OPS, ts, answer)
        code = re.search(r"!confirm ([A-Z0-9]{4})", unescape(reply["text"]))
        if code:  # !undeploy asks first; the answer comes in the asking command's thread
            room.fake.say(OPS, ALICE, f"!confirm {code.group(1)}")
            wait_for_reply(room.fake, OPS, ts, f"removed stack {stack}")

    say(f"!deploy {stack}", f"deployed {stack}")
    room.settle()
    steps = [  # command, its answer, its notice
        (f"!scale {service} 3", f"scaled {service}: 3/3", f"{service} scaled to 3"),
        (f"!scale {service} 1", f"scaled {service}: 1/1", f"{service} scaled to 1"),
        (f"!restart {service}", f"restarted {service}: 1/1", f"{service} restarted"),
        (f"!undeploy {stack}", "!confirm", f"{stack} removed by"),
    ]
    for command, answer, told in steps:
        before = len(room.notices(stack))
        say(command, answer)
        wait_until(lambda told=told: room.notices(told), 30, f"the notice {told!r}")
        room.settle()
        new = room.notices(stack)[before:]
        assert len(new) == 1, (command, new)
        assert f"by slack:{ALICE}" in new[0], new
    everything = "\n".join(room.notices(stack))
    for false in ("outside the bot", "unhealthy", "assigned", "preparing"):
        assert false not in everything, everything
    wait_until(lambda: not swarm.services.list(filters={"name": service}), 30, "the removal")


def test_a_scale_up_by_hand_is_one_outside_change_and_not_unhealthy(
    room: Room, run_id: str, swarm: docker.DockerClient
) -> None:
    stack = room.env.add_stack(f"{run_id}-nt-up", {"svc": {}})
    ts = room.fake.say(OPS, ALICE, f"!deploy {stack}")
    wait_for_reply(room.fake, OPS, ts, f"deployed {stack}")
    room.settle()
    before = len(room.notices(stack))
    swarm.services.get(f"{stack}_svc").scale(4)  # tasks: assigned, preparing, starting
    wait_until(lambda: room.notices(f"{stack}: changed outside the bot"), 30, "the notice")
    room.settle()
    new = room.notices(stack)[before:]
    assert len(new) == 1 and "replicas 1 -> 4" in new[0], new


def test_a_hand_scale_back_to_a_count_the_bot_set_is_told(
    room: Room, run_id: str, swarm: docker.DockerClient
) -> None:
    """The probe: the bot scales to 2; by hand 2 -> 3, then 3 -> 2, the bot's own count.
    Both hand changes are told: the job's expectation ended with the job."""
    stack = room.env.add_stack(f"{run_id}-nt-back", {"svc": {}})
    service = f"{stack}_svc"
    ts = room.fake.say(OPS, ALICE, f"!deploy {stack}")
    wait_for_reply(room.fake, OPS, ts, f"deployed {stack}")
    ts = room.fake.say(OPS, ALICE, f"!scale {service} 2")
    wait_for_reply(room.fake, OPS, ts, f"scaled {service}: 2/2")
    room.settle()
    for count, change in ((3, "replicas 2 -> 3"), (2, "replicas 3 -> 2")):
        swarm.services.get(service).scale(count)
        wait_until(
            lambda change=change: [n for n in room.notices(stack) if change in n],
            30,
            f"the outside notice {change!r}",
        )
        room.settle()
    told = [n for n in room.notices(stack) if "changed outside the bot" in n]
    assert len(told) == 2, told


def test_a_notice_in_a_rate_limited_channel_is_told_once_when_it_frees(
    room: Room, run_id: str
) -> None:
    stack = room.env.add_stack(f"{run_id}-nt-429", {"svc": {}})
    until = time.monotonic() + 6
    room.fake.channel_limit[NOTICES] = (until, 1)
    ts = room.fake.say(OPS, ALICE, f"!deploy {stack}")
    wait_for_reply(room.fake, OPS, ts, f"deployed {stack}")
    notice = wait_until(lambda: room.notices(f"{stack} deployed"), 40, "the deploy notice")
    assert time.monotonic() >= until - 0.1
    room.settle()
    assert len(room.notices(f"{stack} deployed")) == 1, notice


def test_outside_change_is_told_once_saying_so(
    room: Room, run_id: str, swarm: docker.DockerClient
) -> None:
    stack = room.env.add_stack(f"{run_id}-nt-out", {"svc": {}})
    ts = room.fake.say(OPS, ALICE, f"!deploy {stack}")
    wait_for_reply(room.fake, OPS, ts, f"deployed {stack}")
    room.settle()
    before = len(room.notices(stack))
    swarm.services.get(f"{stack}_svc").scale(2)  # someone at a manager's shell
    notice = wait_until(
        lambda: room.notices(f"{stack}: changed outside the bot"), 30, "the outside notice"
    )[0]
    assert f"{stack}_svc: replicas 1 -> 2 (done)" in notice, notice
    room.settle()
    assert len(room.notices(stack)) == before + 1, room.notices(stack)


def test_a_hand_change_is_looked_at_alone_and_a_created_service_is_told(
    room: Room, run_id: str, swarm: docker.DockerClient
) -> None:
    """Events name what changed: the looks that tell a hand change read that service (and
    what else changed at the time in the shared test swarm), not every service; the full
    comparison every poll_seconds reads them all. A service created by hand, which no look
    saw before, is told as created."""
    stack = room.env.add_stack(f"{run_id}-nt-many", {f"s{i}": {"replicas": 0} for i in range(24)})
    ts = room.fake.say(OPS, ALICE, f"!deploy {stack}")
    wait_for_reply(room.fake, OPS, ts, f"deployed {stack}")
    room.settle()
    before = room.looks()
    swarm.services.get(f"{stack}_s3").scale(1)
    notice = wait_until(
        lambda: room.notices(f"{stack}: changed outside the bot"), 30, "the outside notice"
    )[0]
    assert f"{stack}_s3: replicas 0 -> 1 (done)" in notice, notice
    room.settle()
    after = room.looks()

    def per_look(kind: str) -> float:
        looks = after[f"looks:{kind}"] - before.get(f"looks:{kind}", 0)
        assert looks >= 1, (kind, before, after)
        return (after[f"services_read:{kind}"] - before.get(f"services_read:{kind}", 0)) / looks

    assert per_look("full") >= 24, (before, after)  # the stack's 24, and other tests'
    assert per_look("named") <= per_look("full") / 4, (before, after)

    extra = swarm.services.create(
        TEST_IMAGE,
        ["sleep", "3600"],
        name=f"{stack}_extra",
        labels={"com.docker.stack.namespace": stack},
        mode=docker.types.ServiceMode("replicated", 0),
    )
    try:
        notice = wait_until(
            lambda: [n for n in room.notices(f"{stack}: changed outside") if "extra" in n],
            30,
            "the created service told",
        )[0]
        assert f"{stack}_extra: created" in notice, notice
    finally:
        extra.remove()


def test_swarm_rollback_after_an_outside_update_is_told_as_a_failure(
    room: Room, run_id: str, swarm: docker.DockerClient
) -> None:
    stack = room.env.add_stack(
        f"{run_id}-nt-bad",
        {"svc": {"update_config": {"failure_action": "rollback", "monitor": "2s"}}},
    )
    ts = room.fake.say(OPS, ALICE, f"!deploy {stack}")
    wait_for_reply(room.fake, OPS, ts, f"deployed {stack}")
    room.settle()
    service = swarm.services.get(f"{stack}_svc")
    service.update(args=["sh", "-c", "exit 7"])
    notice = wait_until(
        lambda: room.notices(f"{stack}: changed outside the bot"), 60, "the failure notice"
    )[0]
    assert "FAILED" in notice and "rollback completed" in notice, notice


def test_a_notice_that_cannot_be_posted_never_holds_up_answers(room: Room, run_id: str) -> None:
    """Slack fails every post to the notices channel (for now): the notice is retried on
    its own while answers in the command's channel go out as usual; the bot says it is
    degraded, and the notice is posted once Slack takes it again."""
    stack = room.env.add_stack(f"{run_id}-nt-stuck", {"svc": {}})
    room.fake.refuse[NOTICES] = "internal_error"
    try:
        ts = room.fake.say(OPS, ALICE, f"!deploy {stack}")
        wait_for_reply(room.fake, OPS, ts, f"deployed {stack}")
        wait_until(lambda: room.fake.count("chat.postMessage", NOTICES) >= 1, 30, "a notice try")
        ping = room.fake.say(OPS, ALICE, "!ping")
        wait_for_reply(room.fake, OPS, ping, "pong", timeout=10)
        tries = room.fake.count("chat.postMessage", NOTICES)
        # Still retried after the ping was answered: the answer did not wait for it.
        wait_until(
            lambda: room.fake.count("chat.postMessage", NOTICES) > tries, 30, "another notice try"
        )
        health = room.health()
        assert health["ok"] is True, health
        assert health["degraded"] == {
            f"post {NOTICES}": f"cannot post to {NOTICES}: internal_error"
        }, health
        assert 'swarmbot_delivery_failures_total{platform="slack"}' in room.metrics()
    finally:
        room.fake.refuse.pop(NOTICES, None)
    wait_until(lambda: room.notices(f"{stack} deployed"), 30, "the notice, once Slack takes it")
    wait_until(lambda: not room.health()["degraded"], 10, "the bot to be well again")
    room.settle()
    assert len(room.notices(stack)) == 1, room.notices(stack)
    log = room.env.bot_log.read_text()
    assert log.count(f"cannot post to {NOTICES} (internal_error)") == 1, log[-2000:]


def test_a_notice_the_channel_refuses_for_good_is_told_in_the_commands_thread(
    room: Room, run_id: str
) -> None:
    """The bot may not post in the notices channel: no retries that cannot help; the
    command's own thread says what happened."""
    stack = room.env.add_stack(f"{run_id}-nt-refused", {"svc": {}})
    room.fake.refuse[NOTICES] = "not_in_channel"
    before = room.fake.count("chat.postMessage", NOTICES)
    try:
        ts = room.fake.say(OPS, ALICE, f"!deploy {stack}")
        wait_for_reply(room.fake, OPS, ts, f"deployed {stack}")
        told = wait_for_reply(room.fake, OPS, ts, "the notice of this job could not be posted")
        assert unescape(told["text"]).endswith(f"to {NOTICES}: not_in_channel"), told["text"]
        room.settle()
        job = room.env.last_job()["id"]
        log = room.env.bot_log.read_text()
        assert f"job {job} (its notice): cannot post to {NOTICES} (not_in_channel)" in log
        # The "started" message and the outcome, each tried once only.
        assert room.fake.count("chat.postMessage", NOTICES) == before + 2
    finally:
        room.fake.refuse.pop(NOTICES, None)
    assert room.notices(stack) == []


@pytest.fixture(scope="module")
def held(workdir: Path, redis_url: str, swarm: docker.DockerClient, run_id: str) -> Iterator[Room]:
    """A watcher that holds outside changes for 8 s before telling them."""
    with notice_room(workdir, redis_url, "notices-held", f"{run_id}-nh*", 8, "watcher-1") as r:
        yield r


def test_a_change_held_when_the_watcher_dies_is_told_by_the_next(
    held: Room, run_id: str, swarm: docker.DockerClient
) -> None:
    env = held.env
    stack = env.add_stack(f"{run_id}-nh", {"svc": {}})
    assert f"deployed {stack}" in env.chat(f"!deploy {stack}")
    held.settle()
    looks = held.refreshes()
    swarm.services.get(f"{stack}_svc").scale(2)
    # The watcher has looked at the swarm since the change (the scale's events poke it):
    # it holds the change for its 8 s of quiet.
    wait_until(lambda: held.refreshes() > looks + 1, 10, "the watcher to see the change")
    env.kill_worker()  # dies holding it, before the 8 s are up
    assert not held.notices(f"{stack}: changed outside the bot")
    env.start_worker("watcher-2")
    notice = wait_until(
        lambda: held.notices(f"{stack}: changed outside the bot"), 60, "the held notice"
    )[0]
    assert f"{stack}_svc: replicas 1 -> 2 (done)" in notice, notice
    held.settle()
    assert len(held.notices(f"{stack}: changed outside the bot")) == 1, held.notices(stack)
