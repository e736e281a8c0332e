"""Several swarms from one room: the tests' local swarm ("near") and a swarm of the tests'
own on its own dockerd ("far"), one worker each, served by one bot in Slack and the
console. A room has a default swarm, a command names another (``!services far:``), a role
limited to one swarm is refused on the other, answers and notices say which swarm spoke,
and a dead swarm does not slow the other's answers.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

from bot.chat.adapters.slack_render import unescape
from bot.chat.parsing import Invocation, ParseError, parse
from commands import REGISTRY
from tests.cluster import Cluster
from tests.harness import BotEnv, free_port, stack_yaml, wait_until
from tests.slack_fake import FakeSlack, bot_config, running_fake, wait_for_reply

# The manager-death fault: 1 trial here, 20 in `make faults`.
TRIALS = range(int(os.environ.get("FAULT_TRIALS", "1")))
OPS = "C0OPS0001"  # bound to "far" in config: the console's room keeps the first swarm
NOTICES = "C0NOTICE1"
ALICE = "UALICE001"


@dataclass
class Fleet:
    env: BotEnv
    fake: FakeSlack
    far: Cluster
    near_stack: str
    far_stack: str
    health: int
    workers: dict[str, subprocess.Popen[bytes]]

    def ask(self, text: str, contains: str, timeout: float = 60) -> str:
        """Say ``text`` in the ops channel; the reply that says ``contains``, as read."""
        ts = self.fake.say(OPS, ALICE, text)
        reply = wait_for_reply(self.fake, OPS, ts, contains, timeout)
        return unescape(reply["history"][-1])

    def notices(self, about: str) -> list[str]:
        texts = [unescape(m["text"]) for m in self.fake.messages if m["channel"] == NOTICES]
        return [t for t in texts if about in t]


@pytest.fixture(scope="module")
def far(run_id: str) -> Iterator[Cluster]:
    cluster = Cluster(f"{run_id}-far", workers=0)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def fleet(
    workdir: Path, redis_url: str, swarm: docker.DockerClient, far: Cluster, run_id: str
) -> Iterator[Fleet]:
    near_host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    far_stacks = workdir / "fleet-far-stacks"
    far_stacks.mkdir(exist_ok=True)
    health = free_port()
    with running_fake() as fake:
        env = BotEnv(
            workdir,
            redis_url,
            "fleet",
            deadline=40,
            adapters=("slack",),
            extra_roles=bot_config(fake, notices=NOTICES)
            + f"""
            [roles.nearops]
            users = ["console:nearops"]
            commands = ["*"]
            stacks = ["*"]
            swarms = ["near"]

            [health]
            bot_port = {health}

            [notices]
            quiet_seconds = 1
            poll_seconds = 2
            [[notices.route]]
            stacks = ["{run_id}-*"]
            slack = ["{NOTICES}"]

            [swarms.near]
            docker_host = "{near_host}"

            [swarms.far]
            docker_host = "unix://{far.socket()}"
            stacks_dir = "{far_stacks}"
            rooms = ["{OPS}"]
            """,
        )
        near_stack = env.add_stack(f"{run_id}-near", {"web": {"replicas": 1}})
        image = far.push_test_image()
        far_stack = f"{run_id}-far"
        (far_stacks / f"{far_stack}.yaml").write_text(
            stack_yaml({"web": {"replicas": 1, "image": image}})
        )
        workers = {}
        for name in ("near", "far"):
            env.start_worker(f"fleet-{name}", swarm=name)
            assert env.worker is not None
            workers[name] = env.worker
        env.start_bot()
        fleet = Fleet(env, fake, far, near_stack, far_stack, health, workers)
        try:
            for name, stack in (("near", near_stack), ("far", far_stack)):
                out = env.chat(f"!deploy {name}:{stack}", timeout=180)
                assert f"[{name}] deployed {stack}" in out, out
            yield fleet
        finally:
            env.stop_bot()
            for proc in workers.values():
                proc.terminate()
                proc.wait(30)


@pytest.mark.parametrize(
    ("text", "swarm", "args"),
    [
        ("!deploy prod:dev", "prod", {"stack": "dev"}),
        ("!deploy staging:dev@v1.2 in 2h", "staging", {"stack": "dev", "ref": "v1.2"}),
        ("!services staging:", "staging", {}),
        ("!ps prod:dev_gerrit", "prod", {"service": "dev_gerrit"}),
        ("!services", "", {}),
        ("!deploy dev", "", {"stack": "dev"}),
    ],
)
def test_the_swarm_is_named_by_the_first_argument(
    text: str, swarm: str, args: dict[str, str]
) -> None:
    parsed = parse(text, "!", REGISTRY, ("prod", "staging"))
    assert isinstance(parsed, Invocation), parsed
    assert (parsed.swarm, parsed.args) == (swarm, args)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("!deploy moon:dev", "unknown swarm `moon` (known: prod, staging)"),
        ("!deploy prod:", "missing <stack"),
        ("!deploy prod:dev staging:dev", "`staging:dev` is not --force or --prune"),
    ],
)
def test_a_swarm_wrongly_named_is_a_short_error(text: str, says: str) -> None:
    parsed = parse(text, "!", REGISTRY, ("prod", "staging"))
    assert isinstance(parsed, ParseError) and says in parsed.message, parsed


def test_a_bot_of_one_swarm_reads_colons_as_before() -> None:
    parsed = parse("!deploy prod:dev", "!", REGISTRY)
    assert isinstance(parsed, ParseError) and "is not a stack name" in parsed.message


def test_a_room_answers_from_its_swarm_and_a_command_names_the_other(
    fleet: Fleet, swarm: docker.DockerClient
) -> None:
    near_id = swarm.info()["Swarm"]["Cluster"]["ID"]
    far_id = fleet.far.client().info()["Swarm"]["Cluster"]["ID"]
    # The ops channel is bound to far; the console's room to near (the first swarm).
    assert far_id[:12] in fleet.ask("!ping", "pong"), "the channel's own swarm"
    near = fleet.ask("!ping near:", "pong")
    assert near.startswith("[near]") and near_id[:12] in near, near
    out = fleet.env.chat("!services", "!services far:")
    near_part, far_part = out.split("> !services far:")
    assert f"{fleet.near_stack}_web" in near_part and fleet.far_stack not in near_part, out
    assert "[far]" in far_part and f"{fleet.far_stack}_web" in far_part, out
    assert fleet.near_stack not in far_part, out


def test_a_deploy_goes_to_the_swarm_named_and_nowhere_else(
    fleet: Fleet, swarm: docker.DockerClient
) -> None:
    far_names = {s.name for s in fleet.far.client().services.list()}
    near_names = {s.name for s in swarm.services.list()}
    assert f"{fleet.far_stack}_web" in far_names and f"{fleet.far_stack}_web" not in near_names
    assert f"{fleet.near_stack}_web" in near_names and f"{fleet.near_stack}_web" not in far_names
    # The far stack's file is only in far's stacks folder: on near it does not exist.
    out = fleet.env.chat(f"!deploy near:{fleet.far_stack}")
    assert "[near]" in out and f"no stack file `{fleet.far_stack}`" in out, out
    assert f"{fleet.far_stack}_web" not in {s.name for s in swarm.services.list()}


def test_a_role_limited_to_one_swarm_is_refused_on_the_other(fleet: Fleet) -> None:
    out = fleet.env.chat(
        "!services near:",
        "!services far:",
        f"!restart far:{fleet.far_stack}_web",
        user="console:nearops",
    )
    assert f"{fleet.near_stack}_web" in out, out
    refusals = out.count("refused: your roles (nearops) do not hold on swarm `far`")
    assert refusals == 2, out
    assert "queued as job" not in out.split("> !services far:")[1], out


def test_an_unknown_swarm_is_a_short_error(fleet: Fleet) -> None:
    out = fleet.env.chat("!services nowhere:")
    assert "unknown swarm `nowhere` (known: far, near)" in out, out


def test_notices_from_both_swarms_say_which(fleet: Fleet, swarm: docker.DockerClient) -> None:
    for name, client in (("near", swarm), ("far", fleet.far.client())):
        stack = fleet.near_stack if name == "near" else fleet.far_stack
        client.services.get(f"{stack}_web").update(env=[f"HAND={name}"], force_update=1)
    for name, stack in (("near", fleet.near_stack), ("far", fleet.far_stack)):
        wait_until(
            lambda s=stack, n=name: any(
                t.startswith(f"[{n}] ") for t in fleet.notices(f"{s}_web")
            ),
            60,
            f"the notice of the hand change on {name}",
        )
        assert not any(
            t.startswith("[near]" if name == "far" else "[far]")
            for t in fleet.notices(f"{stack}_web")
        )


def test_jobs_audit_and_metrics_name_the_swarm(fleet: Fleet) -> None:
    out = fleet.env.chat("!jobs", "!audit")
    jobs = out.split("> !audit")[0]
    assert "SWARM" in jobs and f"!deploy near:{fleet.near_stack}" in jobs, out
    assert any(
        "far" in line and f"!deploy far:{fleet.far_stack}" in line for line in jobs.splitlines()
    ), out
    assert "SWARM" in out.split("> !audit")[1], out
    with urllib.request.urlopen(f"http://127.0.0.1:{fleet.health}/metrics", timeout=10) as resp:
        metrics = resp.read().decode()
    assert 'swarmbot_queue_depth{swarm="near"}' in metrics, metrics[-2000:]
    assert 'swarmbot_queue_depth{swarm="far"}' in metrics


def test_a_job_copied_into_another_swarms_queue_is_refused(
    fleet: Fleet, swarm: docker.DockerClient
) -> None:
    """Signed, but for far: written into near's queue by someone with Redis access, near's
    worker refuses it (and restarts nothing) rather than running far's command on near."""
    r = fleet.env.redis()
    prefix = fleet.env.prefix
    out = fleet.env.chat(f"!restart far:{fleet.far_stack}_web")
    assert f"[far] restarted {fleet.far_stack}_web" in out, out
    entry = next(
        fields
        for _id, fields in reversed(r.xrange(f"{prefix}:on:far:jobs"))
        if '"op":"restart"' in fields["job"]
    )
    before = swarm.services.get(f"{fleet.near_stack}_web").version
    r.xadd(f"{prefix}:on:near:jobs", entry)
    wait_until(
        lambda: any(
            "is for swarm 'far', not near" in f.get("reason", "")
            for _id, f in r.xrange(f"{prefix}:audit:refused")
        ),
        30,
        "near's worker to refuse far's job",
    )
    assert swarm.services.get(f"{fleet.near_stack}_web").version == before


def test_a_confirmed_command_runs_on_the_swarm_it_named(fleet: Fleet) -> None:
    """The code given for `!label far:...` confirms the label on far, whichever room's
    swarm the confirmation is typed in."""
    asked = fleet.env.chat("!label far:manager1 fleet=far")
    code = re.search(r"confirm ([A-Z0-9]{4,})", asked)
    assert code, asked
    out = fleet.env.chat(f"!confirm {code.group(1)}")
    assert "on far" in out and "[far]" in out, out
    labels = fleet.far.client().nodes.list()[0].attrs["Spec"]["Labels"]
    assert labels.get("fleet") == "far", labels


def near_ping(fleet: Fleet) -> float:
    """Seconds from `!ping near:` said in the far-bound channel to its answer there."""
    ts = fleet.fake.say(OPS, ALICE, "!ping near:")
    said = time.perf_counter()
    return float(wait_for_reply(fleet.fake, OPS, ts, "pong")["at"]) - said


@pytest.mark.parametrize("trial", TRIALS)
def test_a_hung_swarm_does_not_slow_the_other(fleet: Fleet, trial: int) -> None:
    """far's manager hangs (every process of its node stopped: calls to it neither answer
    nor fail). near's answers keep their speed; far's command is answered when its worker
    gives up on the daemon; far is back when the node runs again."""
    before = [near_ping(fleet) for _ in range(5)]
    fleet.far.freeze_node("manager1")
    try:
        stuck = fleet.fake.say(OPS, ALICE, "!services")  # far's, in the far-bound channel
        after = [near_ping(fleet) for _ in range(5)]
        p50 = statistics.median(before), statistics.median(after)
        print(
            f"trial {trial}: near !ping p50 {p50[0] * 1000:.0f} ms, "
            f"far hung {p50[1] * 1000:.0f} ms"
        )
        assert p50[1] < p50[0] + 0.5, (before, after)
        reply = wait_for_reply(fleet.fake, OPS, stuck, "[far]", timeout=120)
        assert "docker" in unescape(reply["history"][-1]).lower(), reply
    finally:
        fleet.far.freeze_node("manager1", frozen=False)
    fleet.ask("!ping", "pong", timeout=120)  # far answers again


def test_a_dead_swarm_does_not_slow_the_other(fleet: Fleet) -> None:
    """Last: far's only manager is killed (its dockerd and everything on it). near's answers
    keep coming, as fast; far's say that its Docker cannot be reached."""
    before = [near_ping(fleet) for _ in range(5)]
    fleet.far.kill_node("manager1")
    stuck = fleet.fake.say(OPS, ALICE, "!services")  # far's: its worker cannot reach it
    after = [near_ping(fleet) for _ in range(5)]
    p50 = statistics.median(before), statistics.median(after)
    print(f"near !ping p50 {p50[0] * 1000:.0f} ms, far dead {p50[1] * 1000:.0f} ms")
    assert p50[1] < p50[0] + 0.5, (before, after)
    reply = wait_for_reply(fleet.fake, OPS, stuck, "[far]", timeout=120)
    assert "docker" in unescape(reply["history"][-1]).lower(), reply
