"""swarmbot: chat-ops for Docker Swarm.

The package shows the two processes and what they share, and ``make lint`` holds the
imports to it (import-linter contracts in pyproject.toml):

- ``bot.core``: both processes. Ids, wire types, policy, config, audit, logs, metrics;
  neither docker nor any chat library.
- ``bot.queue``: Redis. Keys, Lua scripts, the producer (bot), the consumer (worker).
- ``bot.chat``: the chat process (asyncio). Adapters, dispatch, parsing, confirmations,
  rendering; never docker.
- ``bot.swarm``: the worker process, the only holder of the Docker socket. Engine and CLI
  wrappers, convergence, pre-flight, notices; never a chat library.
- ``commands``: one file per command, used by both sides; core and the reply model only.
- ``bot.cli``: the composition root that builds either process.
"""

from importlib.metadata import PackageNotFoundError, version

try:  # pyproject.toml is the one place the version is written
    __version__ = version("swarmbot")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
