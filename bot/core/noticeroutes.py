"""Where a notice about a stack goes: the rooms and channels of every ``[[notices.route]]``
whose globs match it, on the platforms a bot serves (no reader would ever empty another
inbox). One answer for the worker's notices and the bot's own (locks)."""

from __future__ import annotations

from bot.core.config import Config
from bot.core.ids import matches_any


def targets(config: Config, stack: str) -> list[dict[str, str]]:
    """Each a ``reply_to``: ``{"inbox": "matrix", "room": ...}`` or ``{"inbox": "slack",
    "channel": ...}``, in route order, without repeats."""
    found: dict[str, dict[str, str]] = {}
    for route in config.notice_routes:
        if not matches_any(stack, route.stacks):
            continue
        if "matrix" in config.adapters:
            for room in route.matrix:
                found.setdefault(f"matrix:{room}", {"inbox": "matrix", "room": room})
        if "slack" in config.adapters:
            for channel in route.slack:
                found.setdefault(f"slack:{channel}", {"inbox": "slack", "channel": channel})
    return list(found.values())
