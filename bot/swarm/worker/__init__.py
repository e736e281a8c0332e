"""The worker process: ``runtime`` (loop, slots, heartbeat, hand-over, burst mode),
``runner`` (one entry from Redis to its answer), the shared blocks command handlers compose
(``tools``: resolve, change a service or a node, deploy; ``turns``: one job per stack,
claims, apply-once; ``stackfiles``: source, pre-flight, diff, order; ``stackcli``: the
docker CLI), the watchers (``sourcewatch``, and the notice watcher in ``bot.swarm.notices``)
and ``lifecycle`` (the state they share). The operations themselves are the commands' own
handlers (``commands/<name>.py``)."""

from bot.swarm.worker.runtime import Worker, run_burst, run_forever

__all__ = ["Worker", "run_burst", "run_forever"]
