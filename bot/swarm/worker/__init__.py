"""The worker process: ``runtime`` (loop, slots, heartbeat, hand-over), ``runner`` (one
entry from Redis to its answer), ``tools`` (the swarm operations command handlers use),
``lifecycle`` (the state they share). The operations themselves are the commands' own
handlers (``commands/<name>.py``)."""

from bot.swarm.worker.runtime import Worker, run_forever

__all__ = ["Worker", "run_forever"]
