"""Nothing read back from Redis crashes anything: random bytes and shapes written into every
key and stream the bot and the worker read, and both still answer.

The probe's cases first (one non-UTF-8 entry in the job queue crash-looped the worker, the
same bytes in the Slack inbox the bot; a bad byte in a job record made ``!jobs`` print a
traceback), then rounds of random writes (``REDIS_FUZZ_ROUNDS``: 3 in ``make test``, 20
in ``make faults``) into every key: other types, non-UTF-8 bytes, JSON of other shapes.
After each round a person's ``!ping`` in Slack is answered, ``!jobs`` and ``!audit``
answer without an internal error, and both processes say healthy on /healthz.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import redis
import requests

from tests.harness import BotEnv, alive, free_port, wait_until
from tests.slack_fake import FakeSlack, bot_config, running_fake, wait_for_reply

pytestmark = pytest.mark.faults

ROUNDS = int(os.environ.get("REDIS_FUZZ_ROUNDS", "3"))
CHANNEL, ALICE = "C0OPS0001", "UALICE001"
BAD = b"\xff\xfe\x80not utf-8\xc3"


class Fuzzed:
    def __init__(self, env: BotEnv, fake: FakeSlack, ports: tuple[int, int]) -> None:
        self.env, self.fake, self.ports = env, fake, ports
        self.raw = redis.Redis.from_url(env.redis_url)  # bytes in, bytes out

    def key(self, name: str) -> str:
        return f"{self.env.prefix}:{name}"

    def ask(self, text: str, contains: str) -> str:
        ts = self.fake.say(CHANNEL, ALICE, text)
        return "\n".join(wait_for_reply(self.fake, CHANNEL, ts, contains, timeout=30)["history"])

    def healthy(self) -> None:
        for port in self.ports:
            answer = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()
            assert answer["ok"], answer
        assert self.env.worker is not None and alive(self.env.worker.pid)
        assert self.env.bot is not None and alive(self.env.bot.pid)


@pytest.fixture(scope="module")
def fuzzed(workdir: Path, redis_url: str, swarm: docker.DockerClient) -> Iterator[Fuzzed]:
    with running_fake() as fake:
        ports = (free_port(), free_port())
        env = BotEnv(
            workdir,
            redis_url,
            "redis-fuzz",
            adapters=("slack",),
            extra_roles=bot_config(fake)
            + f"""
[health]
bot_port = {ports[0]}
worker_port = {ports[1]}

[notices]
poll_seconds = 2

[[notices.route]]
stacks = ["*"]
slack = ["{CHANNEL}"]
""",
        )
        env.start_worker()
        env.start_bot()
        try:
            yield Fuzzed(env, fake, ports)
        finally:
            env.stop_bot()
            env.stop_worker()


def test_a_non_utf8_job_entry_is_refused_and_the_worker_goes_on(fuzzed: Fuzzed) -> None:
    """The probe: ``XADD <prefix>:jobs * job "\\xff\\xfe…" sig 00``."""
    rejected = fuzzed.raw.xlen(fuzzed.key("rejected"))
    fuzzed.raw.xadd(fuzzed.key("jobs"), {b"job": BAD, b"sig": b"00"})
    wait_until(lambda: fuzzed.raw.xlen(fuzzed.key("rejected")) > rejected, 15, "the entry refused")
    assert "pong" in fuzzed.ask("!ping", "pong")
    fuzzed.healthy()


def test_non_utf8_bytes_in_the_slack_inbox_crash_nothing(fuzzed: Fuzzed) -> None:
    fuzzed.raw.xadd(fuzzed.key("inbox:slack"), {b"result": BAD, b"sig": BAD})
    assert "pong" in fuzzed.ask("!ping", "pong")
    fuzzed.healthy()


def test_a_bad_byte_in_a_job_record_leaves_jobs_readable(fuzzed: Fuzzed) -> None:
    fuzzed.ask("!ping", "pong")
    newest = fuzzed.raw.zrevrange(fuzzed.key("recent"), 0, 0)[0].decode()
    fuzzed.raw.hset(fuzzed.key(f"job:{newest}"), b"text", BAD)
    jobs = fuzzed.ask("!jobs", "JOB")
    assert "internal error" not in jobs
    assert "Traceback" not in jobs


# -- rounds of random writes ---------------------------------------------------------------


def _keys(f: Fuzzed) -> list[str]:
    """Every key either process reads (bot.queue.keys), with the IDs now in use."""
    try:
        jobs = [j.decode(errors="replace") for j in f.raw.zrevrange(f.key("recent"), 0, 5)]
    except redis.ResponseError:  # scribbled over in an earlier round
        jobs = []
    return [
        f.key(k)
        for k in [
            "jobs",
            "job-seq",
            "recent",
            "rejected",
            "workers",
            "worker-load",
            "audit",
            "audit:refused",
            "inbox:slack",
            "rate:slack:" + ALICE,
            "refusals:slack:" + ALICE,
            "confirm:ABCD",
            "notice:state",
            "notice:pending",
            "notice:nodes",
            "notice:moving",
            "notice:leader",
            "notice:refreshes",
            "watch:leader",
            "watch:pokes",
            "watch:drift",
            "slack:posted:notice-x",
            *[f"job:{j}" for j in jobs],
            *[f"seen:{j}" for j in jobs],
            *[f"slack:progress:{j}" for j in jobs],
            *[f"job:{int(j) + n}" for j in jobs[:1] if j.isdigit() for n in range(1, 4)],
        ]
    ]


def _junk(rng: random.Random) -> bytes:
    return rng.choice(
        [
            BAD,
            rng.randbytes(rng.randint(0, 64)),
            json.dumps(rng.choice([[], {}, 1, None, "x", {"spec": 1}, {"a": [1, {}]}])).encode(),
            b"f" * 64 + b"." + b'{"user":"slack:UALICE001","confirmed":true}',
        ]
    )


def _scribble(f: Fuzzed, key: str, rng: random.Random) -> None:
    """One random write of one random shape into ``key`` (its old value dropped or not)."""
    if rng.random() < 0.5:
        f.raw.delete(key)
    shape = rng.choice(["string", "hash", "list", "set", "zset", "stream"])
    try:
        if shape == "string":
            f.raw.set(key, _junk(rng))
        elif shape == "hash":
            f.raw.hset(key, mapping={_junk(rng) or b"k": _junk(rng), b"state": _junk(rng)})
        elif shape == "list":
            f.raw.lpush(key, _junk(rng))
        elif shape == "set":
            f.raw.sadd(key, _junk(rng))
        elif shape == "zset":
            f.raw.zadd(key, {_junk(rng) or b"m": rng.uniform(-1e12, 1e12)})
        else:
            fields = {_junk(rng) or b"k": _junk(rng) for _ in range(rng.randint(1, 3))}
            f.raw.xadd(key, fields)
    except redis.ResponseError:
        pass  # a write of another type onto a kept key: the shape stays as it was


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_random_shapes_in_every_key_crash_nothing(fuzzed: Fuzzed, round_: int) -> None:
    rng = random.Random(round_)
    for key in _keys(fuzzed):
        _scribble(fuzzed, key, rng)
    assert "pong" in fuzzed.ask("!ping", "pong")
    for command, says in (("!jobs", "job"), ("!audit", "audit")):
        answer = fuzzed.ask(command, says)
        assert "internal error" not in answer, (command, answer)
    fuzzed.healthy()
