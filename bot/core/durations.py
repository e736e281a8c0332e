"""Durations as people type them in chat: ``90s``, ``30m``, ``2h``, ``1d``, ``1h30m``."""

from __future__ import annotations

import re

_PART = re.compile(r"(\d{1,6})([smhd])")
_WHOLE = re.compile(r"^(?:\d{1,6}[smhd]){1,4}$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}
PATTERN = re.compile(r"^(?:\d{1,6}[smhd]){1,4}$")


def parse(text: str) -> int | None:
    """Seconds, or None for anything that is not a duration."""
    if not _WHOLE.match(text):
        return None
    return sum(int(n) * _UNIT[u] for n, u in _PART.findall(text))


def say(seconds: float) -> str:
    """2h, 1h 30m, 45m, 20s, 3d 4h."""
    seconds = int(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            count, seconds = divmod(seconds, size)
            parts.append(f"{count}{unit}")
    return " ".join(parts[:2]) or "0s"
