"""Hardening: secrets never reach chat, logs or the audit trail; a replay is refused even
when its Redis records are deleted; lock waiters never starve other jobs; every job is
answered, also when docker hangs or something unforeseen breaks."""

from __future__ import annotations

import base64
import json
import secrets
import stat
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from bot.core.config import Secret
from bot.core.scrub import install
from bot.core.wire import Result, decode_result
from bot.queue.clients import sync_client
from bot.queue.consumer import WorkerQueue
from tests.harness import BotEnv, alive, wait_until
from tests.testbot import TestBot

pytestmark = pytest.mark.swarm

TOKEN = "tok" + secrets.token_hex(10) + "/+@z"  # URL-encoding changes it


@pytest.fixture(scope="module")
def secret_env(workdir: Path, redis_url: str, swarm: docker.DockerClient) -> Iterator[BotEnv]:
    env = BotEnv(workdir, redis_url, "hardening", deadline=15, variables={"TOKEN": TOKEN})
    env.start_worker()
    try:
        yield env
    finally:
        env.stop_worker()


# A careless service: prints the value plainly, base64-encoded and URL-encoded, then fails.
SHOUT = (
    "echo value ${TOKEN} here; "
    "echo b64 $$(printf %s ${TOKEN} | base64); "
    "echo url=$$(printf %s ${TOKEN} | sed 's,/,%2F,g;s,+,%2B,g;s,@,%40,g'); "
    "exit 1"
)


def leaks(text: str) -> list[str]:
    """Every form of TOKEN found in ``text``."""
    forms = [TOKEN, base64.b64encode(TOKEN.encode()).decode()[:-4], urllib.parse.quote(TOKEN)]
    return [f for f in forms if f in text]


def test_variables_never_reach_chat_logs_or_audit(secret_env: BotEnv, run_id: str) -> None:
    """The probe's case: a service echoes a [variables] value, plainly and base64-encoded,
    then fails. The failure's log lines, !logs, !jobs, the worker log and the audit trail
    show *** instead."""
    stack = f"{run_id}-leaky"
    (secret_env.stacks_dir / f"{stack}.yaml").write_text(
        f"""
version: "3.8"
networks: {{hostnet: {{external: true, name: host}}}}
services:
  app:
    image: 127.0.0.1:5999/swarmbot-test/busybox:1
    command: ["sh", "-c", "{SHOUT}"]
    init: true
    networks: [hostnet]
    stop_grace_period: 1s
    deploy:
      replicas: 1
      restart_policy: {{condition: any, delay: 1s}}
      update_config: {{monitor: 1s}}
"""
    )
    out = secret_env.chat(f"!deploy {stack}", f"!logs {stack}_app", f"!ps {TOKEN}", "!jobs")
    assert f"deploy of {stack} FAILED" in out, out
    assert "value *** here" in out and "b64 ***" in out and "url=***" in out, out
    said = "\n".join(line for line in out.splitlines() if not line.startswith("> "))
    assert leaks(said) == [], said  # the bot's lines; "> ..." echoes what the user typed
    r = secret_env.redis()
    audit = json.dumps(
        r.xrange(f"{secret_env.prefix}:audit") + r.xrange(f"{secret_env.prefix}:audit:refused")
    )
    assert TOKEN not in audit and "!ps ***" in audit
    worker_log = secret_env.worker_log.read_text()
    assert f"!ps {TOKEN}" not in worker_log and leaks(worker_log) == []


def test_notices_and_every_result_are_masked_at_the_worker_door(
    secret_env: BotEnv,
) -> None:
    """Notices, progress and answers all leave the worker through one writer; whatever a
    notice says (a task error quoting an env value, say), the value is masked there."""
    client = sync_client(secret_env.redis_url)
    install([TOKEN])
    try:
        queue = WorkerQueue(client, secret_env.prefix, Secret(secret_env.secret.encode()), "t")
        note = f"dev_app failed: connect to postgres://app:{TOKEN}@db failed ({TOKEN})"
        queue.progress(Result("notice", "0", "notice", False, {"text": note}, {"inbox": "nt"}))
    finally:
        install([])
    [(_id, fields)] = client.xrange(f"{secret_env.prefix}:inbox:nt")
    result = decode_result(fields, Secret(secret_env.secret.encode()), {"notice"})
    assert result.data["text"] == "dev_app failed: connect to postgres://app:***@db failed (***)"
    assert TOKEN not in json.dumps(fields)


def test_replay_with_its_redis_records_deleted_is_refused(
    secret_env: BotEnv, run_id: str, swarm: docker.DockerClient
) -> None:
    """An attacker with Redis write access deletes the job's seen key and applied marks and
    puts the captured signed job back: the worker's own ledger refuses it."""
    stack = secret_env.add_stack(f"{run_id}-replay", {"victim": {}})
    assert "] deployed" in secret_env.chat(f"!deploy {stack}")
    assert "restarted" in secret_env.chat(f"!restart {stack}_victim")
    r = secret_env.redis()
    jobs = r.xrange(f"{secret_env.prefix}:jobs")
    entry_id, captured = next((i, f) for i, f in reversed(jobs) if '"restart"' in f["job"])
    job_id = json.loads(captured["job"])["id"]
    before = swarm.services.get(f"{stack}_victim").attrs["Spec"]["TaskTemplate"]["ForceUpdate"]
    r.delete(f"{secret_env.prefix}:seen:{job_id}")
    r.hdel(f"{secret_env.prefix}:job:{job_id}", "applied:restart")
    rejected = r.xlen(f"{secret_env.prefix}:rejected")
    r.xadd(f"{secret_env.prefix}:jobs", captured)
    wait_until(
        lambda: r.xlen(f"{secret_env.prefix}:rejected") > rejected, 15, "the replay refused"
    )
    reason = r.xrevrange(f"{secret_env.prefix}:rejected", count=1)[0][1]["reason"]
    assert reason.startswith(f"replay of job {job_id}"), reason
    after = swarm.services.get(f"{stack}_victim").attrs["Spec"]["TaskTemplate"]["ForceUpdate"]
    assert after == before, "the replay restarted the service again"
    assert entry_id  # the original entry, for the record


@pytest.fixture(scope="module")
def busy_env(workdir: Path, redis_url: str, swarm: docker.DockerClient) -> Iterator[BotEnv]:
    env = BotEnv(workdir, redis_url, "busy", deadline=40, concurrency=4)
    env.start_worker()
    try:
        yield env
    finally:
        env.stop_worker()


def test_jobs_waiting_for_a_stack_never_starve_reads(
    busy_env: BotEnv, run_id: str, swarm: docker.DockerClient
) -> None:
    """Four deploys of one slow stack on a worker with four slots (worker_concurrency =
    4): three wait for the stack's lock without holding a slot, so `!services` is answered
    while they wait (before, the waiters held every slot and `!services` waited for the
    deploys), and its reply does not claim to be queued behind them."""
    stack = busy_env.add_stack(f"{run_id}-busy", {"slow": {"update_config": {"monitor": "4s"}}})
    deploys = [busy_env.chat_in_background(f"!deploy {stack} --force") for _ in range(4)]
    r = busy_env.redis()

    def waiting() -> bool:
        ids = r.zrevrange(f"{busy_env.prefix}:recent", 0, 9)
        states = [r.hget(f"{busy_env.prefix}:job:{i}", "state") for i in ids]
        return states.count("waiting") >= 3

    wait_until(waiting, 30, "deploys waiting for the stack's lock")
    started = time.monotonic()
    out = busy_env.chat("!services", user="console:admin", timeout=30)
    answered_in = time.monotonic() - started
    assert "queued behind" not in out, out
    assert f"{stack}_slow" in out, out
    still = waiting()
    for proc in deploys:
        proc.communicate(timeout=120)
    assert still, f"the deploys had finished before !services answered ({answered_in:.1f}s)"
    second = busy_env.chat(f"!deploy {stack} --force", f"!deploy {stack}")
    assert "converged" in second


@pytest.fixture(scope="module")
def fake_cli_env(workdir: Path, redis_url: str, swarm: docker.DockerClient) -> Iterator[BotEnv]:
    """A worker whose docker CLI misbehaves on purpose, as told by a mode file."""
    root = workdir / "fake-cli"
    root.mkdir(exist_ok=True)
    script = root / "docker"
    script.write_text(
        f"""#!/bin/sh
[ "$1" = version ] && {{ echo 99.0.0; exit 0; }}
case "$(cat {root}/mode)" in
  hang) sleep 3600 & echo $! > {root}/child.pid; wait ;;
  list) echo "- not a mapping" ;;
esac
"""
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    env = BotEnv(workdir, redis_url, "fake-cli", docker_cli=str(script), cli_timeout=2)
    env.add_stack("fakecli", {"app": {}})
    env.start_worker()
    try:
        yield env
    finally:
        env.stop_worker()


def test_a_hung_docker_cli_is_killed_with_its_children_and_answered(
    fake_cli_env: BotEnv,
) -> None:
    root = fake_cli_env.root.parent / "fake-cli"
    (root / "mode").write_text("hang")
    out = fake_cli_env.chat("!check fakecli", timeout=60)
    assert "docker did not answer within 2s (docker stack config); it was stopped" in out, out
    child = int((root / "child.pid").read_text())
    wait_until(lambda: not alive(child), 10, "the CLI's child to be gone")


def test_an_unexpected_error_is_answered_not_left_pending(fake_cli_env: BotEnv) -> None:
    root = fake_cli_env.root.parent / "fake-cli"
    (root / "mode").write_text("list")
    out = fake_cli_env.chat("!check fakecli", "!ping", timeout=60)
    assert "failed: internal error: " in out, out
    assert "pong" in out or "worker" in out
    assert fake_cli_env.last_job().get("state") in ("succeeded",), "the next job ran"
    pending = fake_cli_env.redis().xpending(f"{fake_cli_env.prefix}:jobs", "workers")
    assert pending["pending"] == 0, "a job was left pending"


def test_queued_text_says_why_a_job_waits_and_reads_never_do(
    busy_env: BotEnv, run_id: str, swarm: docker.DockerClient
) -> None:
    """With every ordinary slot busy (four slow deploys of four stacks) a fifth deploy is
    said to wait for a free worker, never to be "queued behind" a job it has nothing to do
    with; and a read (`!ping`, `!services`) takes a read slot: it is neither said to wait
    nor kept waiting, and is answered while all four deploys still run (the probe's
    `!ping` waited 18.9 s behind five deploys)."""
    stacks = [
        busy_env.add_stack(f"{run_id}-busy{i}", {"slow": {"update_config": {"monitor": "8s"}}})
        for i in range(5)
    ]
    deploys = [busy_env.chat_in_background(f"!deploy {stack}") for stack in stacks[:4]]
    r = busy_env.redis()
    load = f"{busy_env.prefix}:worker-load"
    wait_until(
        lambda: (r.hget(load, "test-worker") or "").startswith("4 4 "),
        60,
        "all four ordinary slots busy",
    )
    tb = TestBot(busy_env.config)
    try:
        fifth = tb.ask(f"!deploy {stacks[4]}")
        read = tb.ask("!ping")
    finally:
        tb.close()
    out = busy_env.chat("!services", timeout=30)
    still_busy = (r.hget(load, "test-worker") or "").startswith("4 4 ")
    for proc in deploys:
        proc.communicate(timeout=120)
    assert "waiting for a free worker (all 4 job slots are busy)" in fifth, fifth
    assert "queued behind" not in fifth
    assert "waiting" not in read, read
    assert f"{stacks[0]}_slow" in out, out
    assert still_busy, "the deploys had finished before !services was answered"
    wait_until(
        lambda: swarm.services.list(filters={"name": f"{stacks[4]}_slow"}), 120, "the fifth"
    )
