"""The commands, one module each, found in this package: a module that defines ``COMMAND``
is a command. Nothing outside this package names a command, so adding one is adding a file
(and its tests and docs); what the bot can do is the listing of this directory.
"""

from __future__ import annotations

import importlib
import pkgutil

from commands.base import Command


def _discover() -> dict[str, Command]:
    found: dict[str, Command] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        command = getattr(module, "COMMAND", None)
        if isinstance(command, Command):
            if command.name in found:
                raise ImportError(f"two commands named {command.name!r}")
            found[command.name] = command
    return found


REGISTRY: dict[str, Command] = _discover()
SCHEMAS = {name: c.schema() for name, c in REGISTRY.items() if c.queued}
