"""Test bots that run in the test's own process, against the real Redis and swarm.

- ``TestBot``: the real dispatcher, policy and parser, no worker: ``ask`` returns the
  immediate reply, exactly as an adapter gets it (the way Errbot's ``testbot`` works).
- ``InProcessBot``: the whole conversation in one process, as arq's burst mode runs a
  worker: the console's chat side (dispatch, conversation, the inbox router) and the real
  worker (``Worker.burst``: every queued job to its answer, then return). ``chat`` returns
  the transcript with every final reply, like ``swarmbot console`` with a script; no
  process is started, so a chat test costs the swarm's time, not Python's start-up.

The console subprocess stays for what it is the contract of (the CLI itself, and tests
that crash, restart or stop a worker process: ``BotEnv.start_worker``).
"""

from __future__ import annotations

import asyncio
import io
import threading
from pathlib import Path

from bot.chat.adapters.console import Console
from bot.chat.dispatch import Dispatcher
from bot.core import scrub
from bot.core.config import Config, load
from bot.core.replies import Message, Reply, render_plain
from bot.queue.clients import async_client, sync_client
from bot.queue.producer import JobQueue
from bot.swarm.engine import Swarm
from bot.swarm.worker import Worker
from commands import REGISTRY

IDLE_SECONDS = 0.02  # between looks at an empty queue while a chat waits for its answer


class TestBot:
    __test__ = False  # not a test class, whatever its name

    def __init__(self, config_path: Path, inbox: str = "testbot") -> None:
        self.config: Config = load(config_path, commands=REGISTRY)
        self._loop = asyncio.new_event_loop()
        self._client = async_client(self.config.redis_url)
        self.dispatcher = Dispatcher(self.config, JobQueue(self._client, self.config), inbox)

    def reply(self, line: str, user: str = "console:admin") -> Reply | None:
        message = Message("console", user, "console", line, {"room": "console"})
        return self._loop.run_until_complete(self.dispatcher.handle(message))

    def ask(self, line: str, user: str = "console:admin") -> str:
        """The reply's plain text ("" when the line is not a command)."""
        reply = self.reply(line, user)
        return "" if reply is None else render_plain(reply)

    def close(self) -> None:
        self._loop.run_until_complete(self._client.aclose())
        self._loop.close()


class InProcessBot:
    """The chat side and the worker of one configured swarmbot, in this process."""

    def __init__(self, config_path: Path, consumer: str = "in-process") -> None:
        self.config: Config = load(config_path, commands=REGISTRY)
        worker_config = load(config_path, chat=False, commands=REGISTRY)
        self.worker = Worker(
            worker_config, sync_client(self.config.redis_url), Swarm.from_env(), consumer
        )
        self._lock = threading.Lock()  # one burst at a time in this process

    def run_queue(self) -> int:
        """Run every job queued now to its answer (``Worker.burst``): how many ran."""
        scrub.install(self.config.secret_values())
        with self._lock:
            return self.worker.burst()

    def chat(self, *lines: str, user: str = "console:admin", timeout: float = 120) -> str:
        """A scripted console session, with the worker running what it queues until the
        queue is empty: the transcript, every job's final reply in it."""
        scrub.install(self.config.secret_values())
        out = io.StringIO()
        done = threading.Event()
        worker = threading.Thread(target=self._work_until, args=(done,), daemon=True)
        worker.start()
        try:
            code = asyncio.run(Console(self.config, user, out).run(False, timeout, script=lines))
        finally:
            done.set()
            worker.join(timeout)
        if code != 0:
            raise AssertionError(f"the chat did not finish (exit {code}):\n{out.getvalue()}")
        return out.getvalue()

    def _work_until(self, done: threading.Event) -> None:
        while not done.is_set():
            if not self.run_queue():
                done.wait(IDLE_SECONDS)
