"""swarmbot: chat-ops for Docker Swarm.

The package is split by trust boundary: everything under ``bot/`` except
``worker.py``, ``swarm.py`` and ``stackdeploy.py`` runs in the chat-facing
process and never touches Docker; the worker is the only holder of the socket.
"""

__version__ = "0.1.0"
