"""Real components for the tests: Redis, a one-node swarm, the bot and its worker.

Nothing here mocks the bot: the tests talk to it the way a user does (a console session
with commands in it) and check the swarm through the Docker SDK. Most chat runs in the
test's own process (``BotEnv.start_in_process``: the chat side and the worker's burst
mode, tests/testbot.py); a worker process (``start_worker``) and the console process are
kept for what they are the contract of: crashes, restarts, hand-overs, and the CLI.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import docker
import redis

if TYPE_CHECKING:
    from tests.testbot import InProcessBot

ROOT = Path(__file__).resolve().parent.parent
SWARMBOT = [sys.executable, "-m", "bot.cli"]
TEST_IMAGE = "127.0.0.1:5999/swarmbot-test/busybox:1"
MISSING_IMAGE = "127.0.0.1:5999/swarmbot-test/does-not-exist:1"


def wait_until(
    condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.1
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)  # the poll step of wait_until: waits on a condition


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A private redis-server on a free loopback port, restartable on the same port and data.

    ``durable`` runs it as the deployment does: append-only, fsync on every write.
    """

    def __init__(self, workdir: Path, durable: bool = False) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.durable = durable
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "always"]
            if self.durable
            else ["--appendonly", "no"]
        )
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--dir",
                str(self.dir),
                *persistence,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        wait_until(lambda: _pings(client), 10, "redis-server to answer")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@contextmanager
def redis_server(workdir: Path) -> Iterator[str]:
    """A private redis-server for the session; yields its URL."""
    server = RedisServer(workdir)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


@contextmanager
def local_swarm(workdir: Path) -> Iterator[docker.DockerClient]:
    """A one-node swarm with the busybox test image; stops dockerd only if it started it,
    and never from one of several pytest-xdist processes: the others still use it (then it
    is left running, as `make run` leaves its own; scripts/test.sh starts and stops the
    dockerd of a parallel run itself)."""
    start_dockerd(workdir)
    client = docker.from_env(timeout=60)
    try:
        yield client
    finally:
        client.close()
        if not os.environ.get("PYTEST_XDIST_WORKER"):
            stop_dockerd(workdir)


def stop_dockerd(workdir: Path) -> None:
    """Stop the dockerd that ``local_swarm`` started (if it did) and wait until it is gone."""
    pid_file = workdir / "dockerd.pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text())
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not alive(pid), 60, "dockerd to stop")
    pid_file.unlink()


def start_dockerd(workdir: Path) -> None:
    subprocess.run(
        ["bash", str(ROOT / "scripts/local-swarm.sh"), str(workdir), TEST_IMAGE], check=True
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (already exited, not yet reaped by its parent) counts as stopped.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def stack_yaml(services: dict[str, dict[str, Any]]) -> str:
    """A compose file for test services: quick to stop, quick to judge, no published ports.

    Services join the host network: test services talk to nothing, and an overlay network
    per test stack would only add vxlan state that a killed dockerd can leave behind.
    Each service dict may set image, command, replicas, constraints, update_config.
    """
    lines = [
        'version: "3.8"',
        "networks:",
        "  hostnet:",
        "    external: true",
        "    name: host",
        "services:",
    ]
    for name, spec in services.items():
        command = spec.get("command", ["sleep", "3600"])
        update = {"monitor": "1s", **spec.get("update_config", {})}
        lines.append(f"  {name}:")
        lines.append(f"    image: {spec.get('image', TEST_IMAGE)}")
        lines.append(f"    command: {command!r}".replace("'", '"'))
        lines.append("    init: true")
        lines.append("    networks: [hostnet]")
        lines.append("    stop_grace_period: 1s")
        if spec.get("environment"):
            lines.append("    environment:")
            lines.extend(f'      {k}: "{v}"' for k, v in spec["environment"].items())
        lines.append("    deploy:")
        lines.append(f"      replicas: {spec.get('replicas', 1)}")
        lines.append("      endpoint_mode: dnsrr")
        lines.append("      restart_policy: {condition: any, delay: 1s}")
        lines.append("      update_config:")
        lines.extend(f"        {k}: {v}" for k, v in update.items())
        if spec.get("reserve_cpus"):
            lines.append(f"      resources: {{reservations: {{cpus: '{spec['reserve_cpus']}'}}}}")
        if spec.get("constraints"):
            lines.append(
                f"      placement: {{constraints: {spec['constraints']!r}}}".replace("'", '"')
            )
    return "\n".join(lines) + "\n"


def write_config(
    path: Path,
    redis_url: str,
    stacks_dir: Path,
    redis_prefix: str,
    secret: str,
    deadline: float = 30,
    first: tuple[str, ...] = (),
    extra_roles: str = "",
    adapters: tuple[str, ...] = (),
    worker_timeout: int = 4,
    concurrency: int = 4,
    docker_cli: str = "docker",
    cli_timeout: float = 180,
    variables: dict[str, str] | None = None,
    resolve_image: str = "never",
    host_access: tuple[str, ...] = (),
) -> Path:
    more_variables = "".join(f'{k} = "{v}"\n' for k, v in (variables or {}).items())
    path.write_text(
        textwrap.dedent(
            f"""
            [bot]
            stacks_dir = "{stacks_dir}"
            adapters = {list(adapters)!r}

            [redis]
            url = "{redis_url}"
            prefix = "{redis_prefix}"

            [security]
            signing_secret = "{secret}"
            public_variables = ["DOMAIN"]
            host_access_stacks = {list(host_access)!r}

            [queue]
            job_ttl_seconds = 120
            worker_timeout_seconds = {worker_timeout}
            worker_concurrency = {concurrency}
            state_dir = "{path.parent / "worker-state"}"

            [deploy]
            deadline_seconds = {deadline}
            resolve_image = "{resolve_image}"
            first = {list(first)!r}
            docker_cli = "{docker_cli}"
            cli_timeout_seconds = {cli_timeout}

            [variables]
            DOMAIN = "test.localhost"
            {{more_variables}}

            [roles.admin]
            users = ["console:admin"]
            commands = ["*"]
            stacks = ["*"]
            """
        )
        .replace("'", '"')
        .replace("{more_variables}", more_variables)
        + textwrap.dedent(extra_roles)
        # Tests send many commands a minute as one user; the safety tests set their own.
        + (
            ""
            if "[safety]" in extra_roles
            else "\n[safety]\nrate_limit_per_minute = 10000\nrefusals_per_minute = 10000\n"
        )
    )
    return path


class BotEnv:
    """One configured swarmbot: a config, a worker process, and a way to chat with it."""

    def __init__(self, root: Path, redis_url: str, name: str, **config: Any) -> None:
        self.root = root / name
        self.stacks_dir = self.root / "stacks"
        self.stacks_dir.mkdir(parents=True, exist_ok=True)
        self.redis_url = redis_url
        self.prefix = f"t{secrets.token_hex(4)}"
        self.secret = secrets.token_urlsafe(36)
        self.config = write_config(
            self.root / "config.toml",
            redis_url,
            self.stacks_dir,
            self.prefix,
            self.secret,
            **config,
        )
        self.worker: subprocess.Popen[bytes] | None = None
        self.worker_log = self.root / "worker.log"
        self.bot: subprocess.Popen[bytes] | None = None
        self.bot_log = self.root / "bot.log"
        self.in_process: InProcessBot | None = None

    def add_stack(self, name: str, services: dict[str, dict[str, Any]]) -> str:
        (self.stacks_dir / f"{name}.yaml").write_text(stack_yaml(services))
        return name

    def start_worker(
        self,
        name: str = "test-worker",
        env: dict[str, str] | None = None,
        wait: bool = True,
        swarm: str = "",
    ) -> None:
        """Start ``swarmbot worker`` (of ``swarm`` in [swarms]); with ``wait``, until it is
        ready to take jobs (a worker on another swarm than the one served never is: its
        test waits for the refusal)."""
        mark = self.worker_log.stat().st_size if self.worker_log.exists() else 0
        log = self.worker_log.open("ab")
        more = ["--swarm", swarm] if swarm else []
        self.worker = subprocess.Popen(
            [*SWARMBOT, "worker", "--config", str(self.config), "--name", name, *more],
            cwd=ROOT,
            stdout=log,
            stderr=log,
            env={**self.env(), **(env or {})},
        )

        def ready() -> bool:
            assert self.worker is not None
            if self.worker.poll() is not None:
                raise AssertionError(f"the worker exited:\n{self.worker_log.read_text()[-3000:]}")
            # This worker's "ready", not an earlier worker's in the same log.
            return b"ready" in self.worker_log.read_bytes()[mark:]

        if wait:
            wait_until(ready, 20, "the worker to be ready")

    def start_in_process(self) -> None:
        """Chat in this process from now on, with the worker run in it (burst mode) while a
        chat waits for its answers; no worker process (until ``start_worker``)."""
        from tests.testbot import InProcessBot

        self.in_process = InProcessBot(self.config, consumer=f"in-process-{self.prefix}")

    def ask(self, line: str, user: str = "console:admin") -> str:
        """The immediate answer to ``line`` (the dispatcher alone: nothing queued is run)."""
        from tests.testbot import TestBot

        bot = TestBot(self.config, inbox=f"ask-{secrets.token_hex(3)}")
        try:
            return bot.ask(line, user)
        finally:
            bot.close()

    def run_queue(self) -> int:
        """In-process: run what is queued now to its answers (a worker process does that
        by itself); how many jobs ran."""
        if self.in_process is not None and self.worker is None:
            return self.in_process.run_queue()
        return 0

    def start_bot(self, env: dict[str, str] | None = None) -> None:
        """``swarmbot bot``: the chat adapters from the config (ready when it logs in)."""
        mark = self.bot_log.stat().st_size if self.bot_log.exists() else 0
        log = self.bot_log.open("ab")
        self.bot = subprocess.Popen(
            [*SWARMBOT, "bot", "--config", str(self.config), "--log-level", "INFO"],
            cwd=ROOT,
            stdout=log,
            stderr=log,
            env={**self.env(), **(env or {})},
        )

        def ready() -> bool:
            assert self.bot is not None
            if self.bot.poll() is not None:
                raise AssertionError(f"the bot exited:\n{self.bot_log.read_text()[-3000:]}")
            return b"serving" in self.bot_log.read_bytes()[mark:]

        wait_until(ready, 30, "the bot to log in")

    def stop_bot(self, kill: bool = False) -> None:
        if self.bot is not None:
            if kill:
                self.bot.kill()
            else:
                self.bot.terminate()
            self.bot.wait(30)
            self.bot = None

    def kill_worker(self) -> None:
        """SIGKILL: no clean-up, no goodbye, as in a crash or an OOM kill."""
        if self.worker is not None:
            self.worker.kill()
            self.worker.wait(30)
            self.worker = None

    def chat_in_background(
        self, *lines: str, user: str = "console:admin", wait: float | None = None
    ) -> subprocess.Popen[str]:
        """A console session in its own process; ``wait``: how long it waits for its jobs'
        answers (default: the deploy deadline plus a minute)."""
        more = ["--wait", str(wait)] if wait is not None else []
        proc = subprocess.Popen(
            [*SWARMBOT, "console", "--config", str(self.config), "--user", user, *more],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=self.env(),
        )
        assert proc.stdin is not None
        proc.stdin.write("\n".join(lines) + "\n")
        proc.stdin.close()
        proc.stdin = None  # written and closed: communicate() must not touch it again
        return proc

    def last_job(self) -> dict[str, str]:
        """The record of the newest job on this env's queue ({} if none yet)."""
        r = self.redis()
        ids = r.zrevrange(f"{self.prefix}:recent", 0, 0)
        return r.hgetall(f"{self.prefix}:job:{ids[0]}") if ids else {}

    def stop_worker(self) -> None:
        if self.worker is not None:
            self.worker.terminate()
            self.worker.wait(30)
            self.worker = None

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SWARMBOT_")}
        env["PYTHONPATH"] = str(ROOT)
        return env

    def chat(self, *lines: str, user: str = "console:admin", timeout: float = 120) -> str:
        """Run a scripted console session; returns its transcript (stdout). In-process
        (``start_in_process``) unless a worker process runs."""
        if self.in_process is not None and self.worker is None:
            return self.in_process.chat(*lines, user=user, timeout=timeout)
        proc = subprocess.run(
            [*SWARMBOT, "console", "--config", str(self.config), "--user", user],
            input="\n".join(lines) + "\n",
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
            env=self.env(),
        )
        if proc.returncode != 0:
            raise AssertionError(
                f"console exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
                f"\nworker log:\n{self.worker_log.read_text()[-3000:]}"
            )
        return proc.stdout

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url, decode_responses=True)

    def queued_jobs(self) -> int:
        """How many jobs were ever put on this env's queue (acked entries stay in the stream)."""
        return int(self.redis().xlen(f"{self.prefix}:jobs"))


def removed(obj: docker.models.secrets.Secret | docker.models.volumes.Volume) -> bool:
    """Remove a test's volume or secret; False while a task that uses it is still stopping
    (for ``wait_until``). swarmbot never removes a volume: the tests remove their own."""
    try:
        obj.remove()
    except docker.errors.NotFound:
        return True
    except docker.errors.APIError:
        return False
    return True


def remove_stacks(client: docker.DockerClient, prefix: str, keep: str = "") -> None:
    """Remove every test stack whose name starts with ``prefix`` but not with ``keep``
    (services, then networks)."""
    docker_cli = shutil.which("docker") or "docker"
    stacks = {
        s.attrs["Spec"].get("Labels", {}).get("com.docker.stack.namespace", "")
        for s in client.services.list()
    }
    for stack in sorted(
        s for s in stacks if s.startswith(prefix) and not (keep and s.startswith(keep))
    ):
        subprocess.run([docker_cli, "stack", "rm", stack], capture_output=True, check=False)


REDIS_TEST_IMAGE = "127.0.0.1:5999/swarmbot-test/redis:7"
IMAGE_INPUTS = ("Dockerfile", "pyproject.toml", "scripts/build-image.sh", "bot", "commands")


def swarmbot_test_image() -> str:
    """swarmbot's image, built as CI here must build it (offline), once per source tree:
    the tag is a digest of what goes into the image, so the tests that need it (the
    container test, the manager-loss faults) share one build, even across processes."""
    digest = hashlib.sha256()
    for name in IMAGE_INPUTS:
        path = ROOT / name
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for file in files:
            digest.update(str(file.relative_to(ROOT)).encode() + b"\0" + file.read_bytes())
    tag = f"127.0.0.1:5999/swarmbot-test/swarmbot:src-{digest.hexdigest()[:12]}"
    with _build_lock():
        if not _has_image(tag):
            _build_image(tag)
            _remove_older_builds(tag)
        if not _has_image(REDIS_TEST_IMAGE):
            _build_image("--redis", REDIS_TEST_IMAGE)
    return tag


@contextmanager
def _build_lock() -> Iterator[None]:
    lock = ROOT / ".test-run" / "image.lock"
    lock.parent.mkdir(exist_ok=True)
    with lock.open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _remove_older_builds(keep: str) -> None:
    """Builds of earlier source trees: nothing will use them again."""
    docker_cli = shutil.which("docker") or "docker"
    repo = keep.rsplit(":", 1)[0]
    listed = subprocess.run(
        [docker_cli, "image", "ls", repo, "--format", "{{.Repository}}:{{.Tag}}"],
        capture_output=True, text=True, check=False,
    ).stdout.split()  # fmt: skip
    old = [t for t in listed if t != keep and t.rsplit(":", 1)[-1].startswith("src-")]
    if old:
        subprocess.run([docker_cli, "rmi", *old], capture_output=True, check=False)


def _has_image(tag: str) -> bool:
    docker_cli = shutil.which("docker") or "docker"
    return (
        subprocess.run(
            [docker_cli, "image", "inspect", tag], capture_output=True, check=False
        ).returncode
        == 0
    )


def _build_image(*args: str) -> None:
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts/build-image.sh"), *args],
        env={**os.environ, "SWARMBOT_BUILD": "offline"},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
