"""Hardening, second round: what the bot reads back from Redis is checked, limited roles see
only their own, refusals cannot flush the audit trail, and stack files cannot reach
outside their folder or hand a container the host.

Each test is a hole a probe found (with Redis write access, a limited role, or a stack
file), reproduced as the user saw it."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from bot.chat.results import to_reply
from bot.core.config import Secret
from bot.core.replies import render_plain
from bot.core.sealed import seal
from bot.core.wire import decode_result
from commands import REGISTRY
from tests.harness import ROOT, SWARMBOT, BotEnv, wait_until
from tests.testbot import TestBot

pytestmark = pytest.mark.swarm

CODE = re.compile(r"confirm ([A-Z0-9]{4})")


class Trust:
    def __init__(self, env: BotEnv, run_id: str) -> None:
        self.env = env
        self.mine = f"{run_id}-tr-mine"
        self.other = f"{run_id}-tr-other"
        self.two = f"{run_id}-tr-two"
        self.bot = TestBot(env.config, inbox="trust-testbot")

    def key(self, name: str) -> str:
        return f"{self.env.prefix}:{name}"

    def ask(self, line: str, user: str = "console:admin") -> str:
        return self.bot.ask(line, user)

    def code(self, line: str, user: str = "console:admin") -> str:
        reply = self.ask(line, user)
        match = CODE.search(reply)
        assert match, reply
        return match.group(1)

    def answer(self, job: str) -> str:
        """The job's final answer as chat shows it, from the test bot's inbox."""
        entries = self.env.redis().xrange(self.key("inbox:trust-testbot"))
        secret = Secret(self.env.secret.encode())
        for _id, fields in reversed(entries):
            result = decode_result(fields, secret, REGISTRY)
            if result.job == job and result.kind == "result":
                return render_plain(to_reply(result))
        raise AssertionError(f"no answer to job {job}")

    def finished(self, job: str) -> dict[str, str]:
        r = self.env.redis()
        return wait_until(
            lambda: (
                rec
                if (rec := r.hgetall(self.key(f"job:{job}"))).get("state")
                not in (None, "queued", "running", "waiting")
                else None
            ),
            60,
            f"job {job} to finish",
        )


@pytest.fixture(scope="module")
def trust(
    workdir: Path, redis_url: str, swarm: docker.DockerClient, run_id: str
) -> Iterator[Trust]:
    env = BotEnv(
        workdir,
        redis_url,
        "trust",
        deadline=25,
        extra_roles=f"""
        [roles.limited]
        users = ["console:lim"]
        commands = ["*"]
        stacks = ["{run_id}-tr-mine*"]

        [roles.viewer]
        users = ["console:view"]
        commands = ["jobs", "audit", "services"]
        stacks = ["{run_id}-tr-mine*"]

        [safety]
        rate_limit_per_minute = 10000
        refusals_per_minute = 10
        second_approver_stacks = ["{run_id}-tr-two*"]
        """,
    )
    trust = Trust(env, run_id)
    for stack, service in (
        (trust.mine, "minesvc"),
        (trust.other, "othersvc"),
        (trust.two, "keeper"),
    ):
        env.add_stack(stack, {service: {}})
    env.start_worker()
    try:
        for stack in (trust.mine, trust.other, trust.two):
            assert "converged" in env.chat(f"!deploy {stack}"), stack
        yield trust
    finally:
        trust.bot.close()
        env.stop_worker()


# -- confirmations: sealed, and rights checked again when confirmed ------------------------


def test_a_forged_confirmation_queues_nothing(trust: Trust) -> None:
    """The probe: an unsigned confirmation "by the admin", confirmed by a limited user."""
    r = trust.env.redis()
    forged = {
        "user": "console:admin",
        "command": "restart",
        "args": {"service": f"{trust.other}_othersvc"},
        "text": f"!restart {trust.other}_othersvc",
        "ref": {"room": "console"},
        "stack": "",
        "confirmed": True,
        "approver": "",
        "second": True,
    }
    r.set(trust.key("confirm:ZZ9Q"), json.dumps(forged))
    before = r.xlen(trust.key("jobs"))
    assert "no pending command with code ZZ9Q" in trust.ask("!confirm ZZ9Q", "console:lim")
    # Sealed with another secret: the same.
    r.set(trust.key("confirm:ZZ8Q"), seal(Secret(b"x" * 40), trust.key("confirm:ZZ8Q"), forged))
    assert "no pending command with code ZZ8Q" in trust.ask("!confirm ZZ8Q", "console:lim")
    assert r.xlen(trust.key("jobs")) == before
    audit = trust.ask("!audit 10m")  # the admin reads who tried
    assert "rejected" in audit
    assert "forged code: unsealed" in audit
    assert "forged code: bad seal" in audit


def test_a_genuine_code_copied_under_another_code_is_refused(trust: Trust) -> None:
    r = trust.env.redis()
    code = trust.code(f"!undeploy {trust.mine}", "console:lim")
    r.set(trust.key("confirm:QQ7Q"), r.get(trust.key(f"confirm:{code}")))
    assert "no pending command with code QQ7Q" in trust.ask("!confirm QQ7Q", "console:lim")
    r.delete(trust.key(f"confirm:{code}"))


def test_a_confirmation_needs_the_requesters_rights_when_it_is_confirmed(
    trust: Trust, tmp_path: Path
) -> None:
    """A code given while the requester had the rights; the role is gone when they confirm
    (the bot restarted with a new config): nothing is queued."""
    code = trust.code(f"!undeploy {trust.mine}", "console:lim")
    changed = tmp_path / "config.toml"
    changed.write_text(
        trust.env.config.read_text().replace('users = ["console:lim"]', "users = []")
    )
    later = TestBot(changed, inbox="trust-later")
    try:
        before = trust.env.redis().xlen(trust.key("jobs"))
        assert f"no pending command with code {code}" in later.ask(
            f"!confirm {code}", "console:lim"
        )
        assert trust.env.redis().xlen(trust.key("jobs")) == before
    finally:
        later.close()
        trust.env.redis().delete(trust.key(f"confirm:{code}"))


# -- replays under the same entry ID ---------------------------------------------------------


def test_a_replay_under_its_own_entry_id_is_refused_and_not_answered(trust: Trust) -> None:
    """The probe: delete the stream, add the captured entry back under its original ID,
    recreate the group. Answered "replay of job N", never a second time."""
    env = trust.env
    assert "pong" in env.chat("!ping")
    r = env.redis()
    entry_id, fields = next(
        (i, f) for i, f in reversed(r.xrange(trust.key("jobs"))) if '"ping"' in f.get("job", "")
    )
    job = json.loads(fields["job"])
    inbox = trust.key(f"inbox:{job['reply_to']['inbox']}")
    r.delete(inbox)  # the console deleted it when it quit; an answer would make it again
    rejected = r.xlen(trust.key("rejected"))
    r.delete(trust.key("jobs"))
    r.xadd(trust.key("jobs"), fields, id=entry_id)
    try:
        r.xgroup_create(trust.key("jobs"), "workers", id="0")
    except Exception as exc:  # the worker made it again first
        assert "BUSYGROUP" in str(exc)
    wait_until(lambda: r.xlen(trust.key("rejected")) > rejected, 20, "the replay to be refused")
    reason = r.xrevrange(trust.key("rejected"), count=1)[0][1]["reason"]
    assert reason == f"replay of job {job['id']} (answered already)"
    assert r.xlen(inbox) == 0
    assert "pong" in env.chat("!ping")  # and the queue works on


# -- what a limited role sees ------------------------------------------------------------------


def test_jobs_lists_only_a_limited_users_own_stacks(trust: Trust) -> None:
    jobs = trust.ask("!jobs", "console:view")
    assert f"!deploy {trust.mine}" in jobs
    assert trust.other not in jobs
    assert trust.other in trust.ask("!jobs")  # the admin sees all


def test_audit_of_a_stack_one_may_not_touch_shows_nothing(trust: Trust) -> None:
    assert "nothing in the audit log" in trust.ask(f"!audit {trust.other}", "console:view")
    assert f"!deploy {trust.other}" in trust.ask(f"!audit {trust.other}")


def test_confirmation_codes_show_only_to_who_may_confirm_them(trust: Trust) -> None:
    code = trust.code(f"!undeploy {trust.mine}", "console:lim")
    try:
        assert code in trust.ask(f"!audit {trust.mine}", "console:lim")  # the requester
        seen = trust.ask(f"!audit {trust.mine}", "console:view")
        assert "confirmation-asked" in seen
        assert code not in seen
        assert "(code hidden)" in seen
    finally:
        trust.env.redis().delete(trust.key(f"confirm:{code}"))


def test_a_missing_stack_file_offers_only_stacks_one_may_see(trust: Trust) -> None:
    reply = trust.ask(f"!check {trust.mine}-nosuch", "console:lim")
    job = re.search(r"job (\d+)", reply).group(1)  # type: ignore[union-attr]
    trust.finished(job)
    answer = trust.answer(job)
    assert f"known: {trust.mine}" in answer, answer
    assert trust.other not in answer
    assert trust.two not in answer


def test_all_commands_on_one_stack_is_no_admin_for_cancel(trust: Trust) -> None:
    """``commands = ["*"]`` limited to one stack used to count as an admin: it could cancel
    jobs on other stacks. Now the same answer as for a job that does not exist."""
    assert "pong" in trust.env.chat("!ping")  # the admin's job, on no stack of lim's
    job = trust.env.last_job()["id"]
    assert f"no job {job} that you can cancel" in trust.ask(f"!cancel {job}", "console:lim")
    assert "already finished" in trust.ask(f"!cancel {job}")


def test_a_drain_refusal_names_only_services_one_may_see(
    trust: Trust, swarm: docker.DockerClient
) -> None:
    """On the one-node test swarm a drain would strand every service: refused, and the
    refusal lists the asker's own service and only counts the others."""
    node = swarm.nodes.list()[0].attrs["Description"]["Hostname"]
    code = trust.code(f"!drain {node}", "console:lim")
    job = trust.ask(f"!confirm {code}", "console:lim")
    job_id = re.search(r"job (\d+)", job).group(1)  # type: ignore[union-attr]
    record = trust.finished(job_id)
    assert record["state"] == "failed", record
    text = trust.answer(job_id)
    assert f"{trust.mine}_minesvc" in text
    assert f"{trust.other}_othersvc" not in text
    assert "in stacks your roles do not cover" in text
    assert swarm.nodes.list()[0].attrs["Spec"]["Availability"] == "active"


def test_the_second_approver_rule_covers_rm_and_rollback_of_a_service(trust: Trust) -> None:
    for command in ("rm", "rollback"):
        reply = trust.ask(f"!{command} {trust.two}_keeper")
        assert f"Someone else allowed to {command}" in reply, reply
        trust.env.redis().delete(trust.key(f"confirm:{CODE.search(reply).group(1)}"))  # type: ignore[union-attr]


def test_a_short_name_cannot_slip_past_the_second_approver(
    trust: Trust, swarm: docker.DockerClient
) -> None:
    """``!rm keeper`` does not show its stack to the bot, which asks one person only; the
    worker, which sees the stack, refuses and says how to ask properly."""
    code = trust.code("!rm keeper")
    reply = trust.ask(f"!confirm {code}")
    job = re.search(r"job (\d+)", reply).group(1)  # type: ignore[union-attr]
    record = trust.finished(job)
    assert record["state"] == "failed"
    assert "where two people must approve rm: ask again with its full name" in record["summary"]
    assert swarm.services.list(filters={"name": f"{trust.two}_keeper"})


# -- refusals cannot flush the trail -------------------------------------------------------------


def test_a_flood_of_refusals_is_limited_and_keeps_real_decisions(trust: Trust) -> None:
    r = trust.env.redis()
    queued = trust.ask("!ping")  # a real decision first, and its outcome
    trust.finished(re.search(r"job (\d+)", queued).group(1))  # type: ignore[union-attr]
    decisions = r.xlen(trust.key("audit"))
    answers = [trust.ask(f"!nope{i}", "console:nobody") for i in range(300)]
    assert all("unknown command" in a for a in answers[:10]), answers[:10]
    assert "slow down" in answers[10]
    assert answers[11:] == [""] * 289  # dropped: not even an answer
    assert r.xlen(trust.key("audit")) == decisions  # nothing pushed out of real decisions
    assert r.xlen(trust.key("audit:refused")) <= 11 + 10  # theirs: 11, and a few others'
    assert "!ping" in trust.ask("!audit")


# -- stack files stay inside their folder ------------------------------------------------------


def test_a_symlinked_stack_file_is_refused_without_quoting_its_target(
    trust: Trust, tmp_path: Path, run_id: str
) -> None:
    secret = tmp_path / "shadow"
    secret.write_text("root:$y$hunter2secretline:19000:0:99999:7:::\n")
    link = trust.env.stacks_dir / f"{run_id}-tr-link.yaml"
    link.symlink_to(secret)
    try:
        out = trust.env.chat(f"!check {run_id}-tr-link")
        assert "is not a regular file (symlinks are refused)" in out
        assert "hunter2" not in out
        listing = subprocess.run(
            [*SWARMBOT, "check-config", "--config", str(trust.env.config)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=trust.env.env(),
        )
        assert f"{run_id}-tr-link" not in listing.stdout.split("refused")[0]
        assert "hunter2" not in trust.env.worker_log.read_text()
    finally:
        link.unlink()


def test_a_stack_file_over_the_size_limit_is_refused(trust: Trust, run_id: str) -> None:
    big = trust.env.stacks_dir / f"{run_id}-tr-big.yaml"
    big.write_text("services: {}\n" + "#" * (1024 * 1024 + 10) + "\n")
    try:
        out = trust.env.chat(f"!check {run_id}-tr-big")
        assert "over deploy.max_stack_file_bytes (1,048,576)" in out
    finally:
        big.unlink()


def test_a_broken_stack_file_is_told_by_its_keys_not_its_content(
    trust: Trust, run_id: str
) -> None:
    """Not a stack file at all (a copy of a shadow file, say): compose names its line as an
    unknown key; the answer says there is one, and never repeats it."""
    broken = trust.env.stacks_dir / f"{run_id}-tr-broken.yaml"
    broken.write_text("root:$y$j9T$hunter2secretline:19000:0:99999:7:::\n")
    try:
        out = trust.env.chat(f"!check {run_id}-tr-broken")
        assert "Additional property … is not allowed" in out, out
        assert "hunter2" not in out
        assert "hunter2" not in trust.env.worker_log.read_text()
    finally:
        broken.unlink()


# -- specs that give a container the host ---------------------------------------------------------


HOST_STACK = """
version: "3.8"
services:
  root:
    image: 127.0.0.1:5999/swarmbot-test/busybox:1
    command: ["sleep", "3600"]
    privileged: true
    cap_add: [SYS_ADMIN]
    pid: host
    volumes:
      - /var/run/docker.sock:/var/run/docker.sock
      - /:/host
"""


def test_a_stack_that_owns_the_host_is_refused(
    trust: Trust, swarm: docker.DockerClient, run_id: str
) -> None:
    stack = f"{run_id}-tr-host"
    (trust.env.stacks_dir / f"{stack}.yaml").write_text(HOST_STACK)
    check = trust.env.chat(f"!check {stack}")
    for why in (
        "a privileged container",
        "capability SYS_ADMIN",
        "bind mount of /var/run/docker.sock",
        "bind mount of /: the host's root filesystem",
        "pid: host",
    ):
        assert why in check, (why, check)
    assert "security.host_access_stacks" in check
    deploy = trust.env.chat(f"!deploy {stack}")
    assert "nothing was deployed" in deploy
    assert not swarm.services.list(filters={"name": f"{stack}_root"})
