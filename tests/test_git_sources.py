"""Stacks from git, end to end against real parts: a repository served by ``git daemon``
that the worker clones over the network, pushes whose post-receive hook sends the push
webhook a forge sends (signed its way), the bot's webhook endpoint, a fake-Slack room and
notices channel, and the real swarm.

The conversation proven: deploy from git (commit label, author in the answer) -> push ->
one notice with the diff and a code -> bot and worker restarted -> nothing lost, nothing
doubled -> confirm -> deploy -> notice with commit and author; !stacks behind and up to
date; !rollback <stack> to the previous commit; a change by hand -> one drift notice;
policy auto deploys by itself; bad, stale and replayed deliveries get 401 and an audit
entry; GitHub's and GitLab's formats are accepted too.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import docker
import pytest
import requests

from bot.chat.adapters.slack_render import unescape
from bot.core.config import GitConfig
from bot.swarm.gitsource import GitError, GitSource
from tests.gitserver import GitServer, HttpGitServer, SshGitServer
from tests.harness import BotEnv, free_port, stack_yaml, wait_until
from tests.slack_fake import FakeSlack, bot_config, running_fake, wait_for_reply

pytestmark = pytest.mark.swarm

OPS, NOTICES, ALICE, CAROL = "C0OPS0001", "C0NOTICE1", "UALICE001", "UCAROL001"
HOOK_SECRET = "a-webhook-secret-of-some-length"


class Room:
    def __init__(self, env: BotEnv, fake: FakeSlack, git: GitServer, hook_url: str) -> None:
        self.env, self.fake, self.git, self.hook_url = env, fake, git, hook_url

    def notices(self, about: str) -> list[str]:
        texts = [unescape(m["text"]) for m in self.fake.messages if m["channel"] == NOTICES]
        return [t for t in texts if about in t]

    def ask(self, text: str, answer: str, user: str = ALICE, timeout: float = 90) -> str:
        return self.reply(self.fake.say(OPS, user, text), answer, timeout)

    def reply(self, ts: str, answer: str, timeout: float = 90) -> str:
        """The reply in ``ts``'s thread that says ``answer``."""
        return unescape(wait_for_reply(self.fake, OPS, ts, answer, timeout=timeout)["text"])

    def looks(self) -> int:
        return int(self.env.redis().get(f"{self.env.prefix}:watch:looks") or 0)

    def settle(self) -> None:
        """Two more looks by the source watcher: anything still to be told is told."""
        start = self.looks()
        wait_until(lambda: self.looks() >= start + 2, 60, "the source watcher to look twice")

    def labels(self, service: str) -> dict[str, str]:
        return docker.from_env().services.get(service).attrs["Spec"]["Labels"]

    def env_of(self, service: str) -> list[str]:
        spec = docker.from_env().services.get(service).attrs["Spec"]
        return spec["TaskTemplate"]["ContainerSpec"].get("Env") or []


@contextmanager
def git_room(
    workdir: Path,
    redis_url: str,
    name: str,
    git: GitServer,
    stacks: str,
    config: str,
    hook: str = "",
    notice_poll: int = 2,
) -> Iterator[Room]:
    """A worker and a Slack bot whose stacks come from ``git`` (``config``: the [git] and
    policy sections), notices about ``stacks`` in the NOTICES channel; ready once the
    source watcher has seen the branch, so that every push from then on is news."""
    with running_fake() as fake:
        env = BotEnv(
            workdir,
            redis_url,
            name,
            deadline=30,
            adapters=("slack",),
            extra_roles=bot_config(fake, (ALICE, CAROL), OPS, notices=NOTICES)
            + config
            + f"""
            [notices]
            quiet_seconds = 1
            poll_seconds = {notice_poll}

            [[notices.route]]
            stacks = ["{stacks}"]
            slack = ["{NOTICES}"]
            """,
        )
        r = Room(env, fake, git, hook)
        env.start_worker(f"{name}-worker")
        env.start_bot()
        try:
            r.settle()
            yield r
        finally:
            env.stop_bot()
            env.stop_worker()


@pytest.fixture(scope="module")
def room(workdir: Path, redis_url: str, swarm: docker.DockerClient, run_id: str) -> Iterator[Room]:
    with GitServer(workdir / "git-sources") as git:
        yield from _room(workdir, redis_url, run_id, git)


def _room(workdir: Path, redis_url: str, run_id: str, git: GitServer) -> Iterator[Room]:
    git.commit({"README": "the swarm's stacks\n"}, "Start the repository", "Alice")
    hook_port = free_port()
    url = f"http://127.0.0.1:{hook_port}/hooks/git"
    git.hook(url, HOOK_SECRET, "gitea")
    config = f"""
            [git]
            url = "{git.url}"
            branch = "main"
            path = "stacks"
            poll_seconds = 600

            [changes.policy]
            "{run_id}-gc" = "confirm"
            "{run_id}-ga" = "auto"
            "{run_id}-gl" = "auto"

            [webhook]
            port = {hook_port}
            secret = "{HOOK_SECRET}"
            """
    with git_room(workdir, redis_url, "git-sources", git, f"{run_id}-g*", config, url) as r:
        yield r


def web(value: str) -> str:
    return stack_yaml({"web": {"environment": {"LEVEL": value}}})


def test_push_confirm_deploy_restart_rollback_and_drift(room: Room, run_id: str) -> None:
    stack = f"{run_id}-gc"
    service = f"{stack}_web"
    first = room.git.commit({f"stacks/{stack}.yaml": web("one")}, "Add the web stack", "Alice")
    wait_until(lambda: room.notices(first[:7]), 30, "the new stack's notice")

    # Deployed from git: the answer names the commit and its author; so does the label.
    answer = room.ask(f"!deploy {stack}", f"deployed {stack} at {first[:7]}")
    assert f'{first[:7]} "Add the web stack" (Alice)' in answer, answer
    assert room.labels(service)["swarmbot.commit"] == first
    assert "up to date with main" in room.ask("!stacks", f"{stack}")

    # A push: the forge's webhook wakes the watcher; one notice, with the diff and a code.
    second = room.git.commit({f"stacks/{stack}.yaml": web("two")}, "Raise the level", "Bob")
    notice = wait_until(lambda: room.notices(second[:7]), 30, "the push notice")[0]
    assert set(room.git.hook_statuses()) == {202}, room.git.hook_statuses()
    assert f"main changed {stack}.yaml ({second[:7]} by Bob: Raise the level)" in notice
    assert f"{service}: changed: environment changed: LEVEL" in notice, notice
    code = re.search(r"!confirm ([A-Z0-9]{4}) deploys it", notice)
    assert code, notice
    assert "1 commit behind main" in room.ask("!stacks", stack)

    # Bot and worker restarted while the approval waits: nothing lost, nothing doubled.
    room.env.stop_bot()
    room.env.stop_worker()
    room.env.start_worker("git-worker")
    room.env.start_bot()
    room.settle()
    assert len(room.notices(second[:7])) == 1, room.notices(second[:7])

    # Anyone allowed to deploy the stack confirms; the deploy names commit and author.
    answer = room.ask(f"!confirm {code.group(1)}", f"deployed {stack} at {second[:7]}", CAROL)
    assert '"Raise the level" (Bob)' in answer, answer
    assert "LEVEL=two" in room.env_of(service)
    assert room.labels(service)["swarmbot.commit"] == second
    assert room.labels(service)["swarmbot.commit.previous"] == first
    told = wait_until(lambda: room.notices(f"{stack} deployed at {second[:7]}"), 30, "notice")
    assert f'"Raise the level" (Bob) by slack:{CAROL} via !deploy {stack}@{second[:7]}' in told[0]
    assert "up to date with main" in room.ask("!stacks", stack)
    again = room.ask(f"!confirm {code.group(1)}", "no pending command", CAROL)
    assert "no pending command" in again

    # !rollback <stack>: back to the commit deployed before (asks first, as rollbacks do).
    asking = room.fake.say(OPS, ALICE, f"!rollback {stack}")
    code = re.search(r"!confirm ([A-Z0-9]{4})", room.reply(asking, "!confirm"))
    assert code
    room.fake.say(OPS, ALICE, f"!confirm {code.group(1)}")
    answer = room.reply(asking, f"rolled back {stack} at {first[:7]}")  # the asking thread
    assert '"Add the web stack" (Alice)' in answer, answer
    assert "LEVEL=one" in room.env_of(service)
    assert room.labels(service)["swarmbot.commit"] == first
    assert "1 commit behind main" in room.ask("!stacks", stack)

    # A change by hand: one drift notice, with the diff and how to put it back.
    room.settle()
    before = len(room.notices("drifted"))
    docker.from_env().services.get(service).update(env=["LEVEL=by-hand"])
    drift = wait_until(lambda: room.notices(f"{stack} has drifted"), 60, "the drift notice")
    assert f"from its file at {first[:7]}" in drift[0], drift
    assert f"{service}: environment changed: LEVEL (by hand)" in drift[0], drift
    assert f"!deploy {stack}@{first[:7]} puts it back" in drift[0]
    room.settle()
    room.settle()
    assert len(room.notices("drifted")) == before + 1, room.notices("drifted")
    # One notice for one change: not also "changed outside the bot".
    assert not room.notices(f"{service} changed outside the bot"), room.notices(service)

    # Undone by hand: told once too.
    docker.from_env().services.get(service).update(env=["LEVEL=one"])
    wait_until(lambda: room.notices(f"{stack} matches its file at {first[:7]} again"), 60, "")
    room.settle()
    assert len(room.notices("again")) == 1 and len(room.notices("drifted")) == before + 1

    # A ref in chat: !diff and !check at a commit, !deploy at a commit; drift is mended.
    diff = room.ask(f"!diff {stack}@{second[:7]}", "would change")
    assert f"at {second[:7]}" in diff and "LEVEL" in diff, diff
    checked = room.ask(f"!check {stack}@main", "no problems found")
    assert f"{stack} at {second[:7]}" in checked, checked
    room.ask(f"!deploy {stack}@{second[:7]}", f"deployed {stack} at {second[:7]}")
    assert "LEVEL=two" in room.env_of(service)
    # A bot job that leaves the stack differing from git on purpose (`!scale`) is told by
    # its job, not again as drift.
    room.ask(f"!scale {service} 2", f"scaled {service}: 2/2")
    room.settle()
    room.settle()
    assert len(room.notices("drifted")) == before + 1, room.notices("drifted")
    bad = room.ask(f"!deploy {stack}@no-such-branch", "no branch, tag or commit")
    assert "no-such-branch" in bad
    assert "is not a git ref" in room.ask(f"!deploy {stack}@-x", "is not a git ref")


def test_policy_auto_deploys_a_push_and_tells_commit_and_author(room: Room, run_id: str) -> None:
    stack = f"{run_id}-ga"
    first = room.git.commit({f"stacks/{stack}.yaml": web("a")}, "Add the auto stack", "Alice")
    # A new stack file is a change like any other: policy auto deploys it.
    wait_until(lambda: room.notices(f"{stack} deployed at {first[:7]}"), 90, "the first deploy")
    second = room.git.commit({f"stacks/{stack}.yaml": web("b")}, "Auto bump", "Dave")
    told = wait_until(
        lambda: room.notices(f"{stack} deployed at {second[:7]}"), 90, "the auto deploy notice"
    )
    assert '"Auto bump" (Dave) by swarmbot:auto' in told[0], told
    assert "converged" in told[0]
    assert "LEVEL=b" in room.env_of(f"{stack}_web")
    [proposal] = room.notices(f"({second[:7]} by Dave: Auto bump): deploying it (policy auto")
    assert proposal
    room.settle()
    assert len(room.notices(f"deployed at {second[:7]}")) == 1

    # A stack file removed from git is told, and never undeployed by itself, even by auto.
    gone = room.git.remove(f"stacks/{stack}.yaml", "Retire the auto stack", "Dave")
    told = wait_until(lambda: room.notices(f"removed {stack}.yaml ({gone[:7]}"), 30, "removal")
    assert f"!undeploy {stack} removes the stack (its volumes stay)" in told[0], told
    room.settle()
    assert "LEVEL=b" in room.env_of(f"{stack}_web")


def test_an_auto_change_to_a_locked_stack_waits_then_deploys_when_unlocked(
    room: Room, run_id: str
) -> None:
    stack = f"{run_id}-gl"
    first = room.git.commit({f"stacks/{stack}.yaml": web("a")}, "Add the locked stack", "Alice")
    wait_until(lambda: room.notices(f"{stack} deployed at {first[:7]}"), 90, "the first deploy")
    room.ask(f"!lock {stack} migrating the database", f"{stack} locked")
    second = room.git.commit({f"stacks/{stack}.yaml": web("b")}, "Bump while locked", "Dave")
    held = wait_until(lambda: room.notices(f"{second[:7]}"), 60, "the held change told")
    assert f"locked by slack:{ALICE}" in held[0] and "migrating the database" in held[0], held
    assert "waits" in held[0], held
    room.settle()
    assert "LEVEL=a" in room.env_of(f"{stack}_web")  # not deployed while locked
    assert not room.notices(f"{stack} deployed at {second[:7]}")

    room.ask(f"!unlock {stack}", f"{stack} unlocked")
    told = wait_until(
        lambda: room.notices(f"{stack} deployed at {second[:7]}"), 90, "the deploy once unlocked"
    )
    assert '"Bump while locked" (Dave) by swarmbot:auto' in told[0], told
    assert "LEVEL=b" in room.env_of(f"{stack}_web")


def test_bad_stale_and_replayed_webhooks_get_401_and_an_audit_entry(
    room: Room, run_id: str
) -> None:
    stack = f"{run_id}-gn"
    room.git.commit({f"stacks/{stack}.yaml": web("x")}, "Notify only", "Erin")
    wait_until(lambda: room.git.hook_statuses()[-1:] == [202], 20, "the push accepted")
    genuine = room.git.last_delivery()

    def post(body: bytes, **headers: str) -> requests.Response:
        return requests.post(room.hook_url, data=body, headers=headers, timeout=10)

    def sign(body: bytes, secret: str = HOOK_SECRET) -> str:
        return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()

    replayed = post(genuine, **{"X-Gitea-Event": "push", "X-Gitea-Signature": sign(genuine)})
    assert replayed.status_code == 401 and "replayed" in replayed.json()["error"]
    forged = post(genuine + b" ", **{"X-Gitea-Event": "push", "X-Gitea-Signature": sign(genuine)})
    assert forged.status_code == 401 and "bad signature" in forged.json()["error"]
    wrong_key = post(
        b"{}",
        **{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + sign(b"{}", "guess")},
    )
    assert wrong_key.status_code == 401
    old = json.dumps(
        {
            "ref": "refs/heads/main",
            "after": "0" * 40,
            "commits": [{"id": "0" * 40, "timestamp": "2020-01-01T00:00:00+00:00"}],
        }
    ).encode()
    stale = post(old, **{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + sign(old)})
    assert stale.status_code == 401 and "stale" in stale.json()["error"]
    token = post(old, **{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "not-the-token"})
    assert token.status_code == 401

    # GitHub's and GitLab's formats, genuine: accepted, and they wake the watcher.
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    fresh = json.dumps(
        {"ref": "refs/heads/main", "after": "1" * 40, "commits": [{"timestamp": now}]}
    ).encode()
    looks = room.looks()
    github = post(
        fresh, **{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + sign(fresh)}
    )
    assert github.status_code == 202, github.text
    gitlab = post(fresh + b"\n", **{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": HOOK_SECRET})
    assert gitlab.status_code == 202, gitlab.text
    wait_until(lambda: room.looks() > looks, 30, "the watcher woken by the webhook")
    ping = post(
        b"{}", **{"X-GitHub-Event": "ping", "X-Hub-Signature-256": "sha256=" + sign(b"{}")}
    )
    assert ping.status_code == 200 and ping.json()["ignored"] == "ping event"

    # A flood of forged deliveries: all refused, at most 20 a minute in the audit trail, so
    # real entries are not pushed out of it.
    flood = [
        post(b"{}", **{"X-Gitea-Event": "push", "X-Gitea-Signature": "0" * 64}) for _ in range(30)
    ]
    assert {r.status_code for r in flood} == {401}
    # Refusals are kept in a stream of their own: real decisions are never pushed out.
    entries = room.env.redis().xrange(f"{room.env.prefix}:audit:refused")
    refused = [
        e for _, e in entries if e.get("platform") == "webhook" and e.get("decision") == "refused"
    ]
    assert len(refused) == 20, len(refused)

    audit = room.ask("!audit 10m", "audit log")
    for reason in ("replayed", "bad signature or token", "stale"):
        assert reason in audit, (reason, audit)
    assert "webhook:github" in audit and "webhook:gitlab" in audit, audit


TOKEN = "glpat-test-token-0123456789"


@pytest.fixture(scope="module")
def polled(
    workdir: Path, redis_url: str, swarm: docker.DockerClient, run_id: str
) -> Iterator[Room]:
    """Another repository, over smart HTTP with a token from a file (a Docker secret), no
    webhook at all: only polling finds its pushes; its stack needs two approvers."""
    with GitServer(workdir / "git-polled") as git:
        git.commit({"README": "polled\n"}, "Start", "Alice")
        with HttpGitServer(git.bare, "git", TOKEN) as http:
            token_file = workdir / "git-polled" / "token"
            token_file.write_text(TOKEN + "\n")
            config = f"""
            [git]
            url = "{http.url}"
            token_file = "{token_file}"
            poll_seconds = 7

            [changes]
            default = "confirm"

            [safety]
            second_approver_stacks = ["{run_id}-gp*"]
            """
            # Both intervals over redis-py 8's 5 s socket timeout: a watcher that blocked on
            # Redis for its whole interval failed every wait and never saw a push.
            rooms = (workdir, redis_url, "git-polled", git, f"{run_id}-gp*", config)
            with git_room(*rooms, notice_poll=7) as r:
                r.http = http  # type: ignore[attr-defined]
                yield r


def test_polling_finds_a_push_and_two_people_approve_it(polled: Room, run_id: str) -> None:
    room = polled
    stack = f"{run_id}-gp"
    sha = room.git.commit({f"stacks/{stack}.yaml": web("p")}, "Polled stack", "Frank")
    notice = wait_until(lambda: room.notices(sha[:7]), 30, "the polled push's notice")[0]
    assert "two different people must confirm" in notice, notice
    code = re.search(r"!confirm ([A-Z0-9]{4}) deploys it", notice)
    assert code
    first = room.fake.say(OPS, ALICE, f"!confirm {code.group(1)}")
    noted = room.reply(first, "waits for a second approver")
    assert f"!deploy {stack}@{sha[:7]}" in noted, noted
    again = room.ask(f"!confirm {code.group(1)}", "you confirmed")
    assert "waits for someone else" in again
    room.fake.say(OPS, CAROL, f"!confirm {code.group(1)}")
    answer = room.reply(first, f"deployed {stack} at {sha[:7]}")  # the first confirmer's thread
    assert '"Polled stack" (Frank)' in answer
    assert room.labels(f"{stack}_web")["swarmbot.commit"] == sha

    # The token went to the server, and nowhere else: not in chat, logs or the clone.
    assert room.http.seen_auth[-1].startswith("Basic ")  # type: ignore[attr-defined]
    everything = "\n".join(m["text"] for m in room.fake.messages)
    assert TOKEN not in everything
    assert TOKEN not in room.env.worker_log.read_text()
    assert "redis unavailable" not in room.env.worker_log.read_text()
    clone = room.env.root / "worker-state" / "git" / "repo.git" / "config"
    assert TOKEN not in clone.read_text()

    # The repository goes down: what was fetched still answers (a rollback is most needed
    # exactly then), and says it is the last fetch.
    room.http.stop()  # type: ignore[attr-defined]
    answer = room.ask(f"!diff {stack}@{sha[:7]}", "a deploy would change nothing")
    assert f"{sha[:7]}" in answer and "(as last fetched: git unreachable" in answer, answer


def test_ssh_with_a_deploy_key_and_the_servers_host_key(workdir: Path) -> None:
    """git over SSH with the key and known_hosts from config (Docker secrets): it fetches
    and writes a commit's files; an unknown host key and a key the server does not take
    are refused with what to fix, and nothing is fetched."""
    root = workdir / "git-ssh"
    with GitServer(root / "repo") as git:
        sha = git.commit({"stacks/web.yaml": web("ssh")}, "Over SSH", "Gina")
        with SshGitServer(root / "ssh", git.bare) as ssh:

            def source(key: Path, hosts: Path, name: str) -> GitSource:
                config = GitConfig(ssh.url, "main", "stacks", key, hosts, None, "git", 60)
                return GitSource(config, root / name)

            good = source(ssh.client_key, ssh.known_hosts, "good")
            assert good.fetch() == sha
            assert good.commit(sha).author == "Gina"
            assert "LEVEL" in (good.tree(sha) / "web.yaml").read_text()

            other_key = root / "other_key"
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other_key)], check=True
            )
            stranger = root / "other_hosts"  # another server's key for the same address
            other_pub = " ".join(Path(f"{other_key}.pub").read_text().split()[:2])
            stranger.write_text(f"[127.0.0.1]:{ssh.port} {other_pub}\n")
            with pytest.raises(GitError, match=r"host key is not in git\.known_hosts_file"):
                source(ssh.client_key, stranger, "stranger").fetch()

            with pytest.raises(GitError, match=re.escape("refused swarmbot's credentials")):
                source(other_key, ssh.known_hosts, "refused").fetch()
