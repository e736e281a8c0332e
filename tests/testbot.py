"""An in-process test bot: the real dispatcher, policy and parser against the real Redis,
without a console subprocess (the way Errbot's ``testbot`` works).

``ask(line, user=...)`` returns the bot's immediate reply, exactly as an adapter would get
it (masked, as shown in chat). Jobs it queues go onto the env's real queue; a worker, if
one runs for the env, runs them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.chat.dispatch import Dispatcher
from bot.core.config import Config, load
from bot.core.replies import Message, Reply, render_plain
from bot.queue.clients import async_client
from bot.queue.producer import JobQueue
from commands import REGISTRY


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
