"""``swarmbot bot``: the chat adapters named in config, and nothing else.

Each adapter gets its own inbox (results come back to the adapter that queued the job) and
its own dispatcher; the worker runs elsewhere (``swarmbot worker``), the only process with
the Docker socket.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from typing import Any

from bot.chat.dispatch import Dispatcher
from bot.chat.results import Deliveries, Router
from bot.core import health
from bot.core.config import Config
from bot.queue.clients import async_client, close, reachable, sync_client
from bot.queue.inbox import Inbox
from bot.queue.producer import JobQueue
from bot.queue.pushstore import PushStore
from bot.queue.stats import publish_queue_metrics
from commands import REGISTRY

log = logging.getLogger("swarmbot.bot")


async def run_bot(config: Config) -> None:
    client = async_client(config.redis_url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    consumer = socket.gethostname()
    tasks = []
    adapters: list[MatrixAdapter | SlackAdapter] = []
    deliveries = Deliveries()
    for name in config.adapters:
        if name == "matrix":
            from bot.chat.adapters.matrix import MatrixAdapter

            dispatcher = Dispatcher(config, JobQueue(client, config), MatrixAdapter.inbox)
            adapter: MatrixAdapter | SlackAdapter = MatrixAdapter(config, dispatcher)
        elif name == "slack":
            from bot.chat.adapters.slack import SlackAdapter

            dispatcher = Dispatcher(config, JobQueue(client, config), SlackAdapter.inbox)
            adapter = SlackAdapter(config, dispatcher)
        else:  # config validation lists the known adapters
            raise AssertionError(name)
        adapters.append(adapter)
        inbox = Inbox(client, config, adapter.inbox, REGISTRY)
        tasks.append(asyncio.create_task(adapter.run(stop), name=f"{name}-sync"))
        router = Router(
            inbox, consumer, adapter.deliver, deliveries=deliveries, tell=adapter.conversation.tell
        )
        tasks.append(asyncio.create_task(router.run(stop), name=f"{name}-results"))
        log.info("adapter %s started", name)
    if config.health_bot_port:
        check, refresh = _health_checks(config, adapters)
        health.serve(
            config.health_host,
            config.health_bot_port,
            check,
            refresh,
            role="bot",
            degraded=deliveries.problems,
        )
    if config.webhook is not None:
        from bot.chat import webhook

        webhook.serve(
            config,
            PushStore.connect(config.redis_url, config.redis_prefix, config.swarm_names or ("",)),
        )
    if config.alerts is not None and config.alerts.port:
        from bot.chat import alertreceiver
        from bot.queue.alertstore import AlertStore

        alertreceiver.serve(
            config,
            AlertStore.connect(
                config.redis_url,
                config.redis_prefix,
                config.signing_secret,
                config.swarm_names or ("",),
            ),
        )
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()  # an adapter that died takes the process down, loudly
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await close(client)


def _health_checks(config: Config, adapters: list[Any]) -> tuple[Any, ...]:
    """The bot is healthy when it reaches Redis and every chat platform it serves. The
    checks run in the health thread, with a synchronous Redis client of their own."""
    client = sync_client(config.redis_url)

    def check() -> dict[str, str]:
        problems = {a.platform: "" if a.connected else "not connected" for a in adapters}
        problems["redis"] = reachable(client)
        return problems

    def refresh() -> None:
        publish_queue_metrics(
            client,
            config.redis_prefix,
            config.worker_timeout_seconds,
            config.swarm_names or ("",),
        )

    return check, refresh
