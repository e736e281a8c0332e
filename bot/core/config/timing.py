"""The [windows] section: when changes to which stacks may be made, in which time zone.

    [windows]
    timezone = "Europe/Berlin"
    "prod*" = ["Mon-Fri 09:00-16:00"]

Every key but ``timezone`` is a stack glob (first match wins); its value, the windows."""

from __future__ import annotations

import re
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.core.config.model import Problems
from bot.core.windows import BadWindow, WindowRule, parse

# A stack glob, or one for one swarm of several: "prod:*" (see swarms.on_swarm).
GLOB = re.compile(r"^([a-z][a-z0-9-]{0,31}:)?[a-z0-9*?\[\]_-]{1,64}$")


def windows(raw: Any, problems: Problems) -> tuple[str, tuple[WindowRule, ...]]:
    """(time zone, rules); every problem names its key."""
    if raw is None:
        return "UTC", ()
    if not isinstance(raw, dict):
        problems.append(("windows", 'must be a table: "glob" = ["Mon-Fri 09:00-16:00"]'))
        return "UTC", ()
    zone = raw.get("timezone", "UTC")
    if not isinstance(zone, str) or not _zone_known(zone):
        problems.append(
            ("windows.timezone", f"{zone!r} is not a time zone (such as Europe/Berlin)")
        )
        zone = "UTC"
    rules = []
    for glob, specs in raw.items():
        if glob == "timezone":
            continue
        key = f'windows."{glob}"'
        if not GLOB.match(glob):
            problems.append((key, f"{glob!r} is not a stack name or glob"))
            continue
        if not isinstance(specs, list) or not specs or not all(isinstance(s, str) for s in specs):
            problems.append((key, 'must be a list of windows such as ["Mon-Fri 09:00-16:00"]'))
            continue
        parsed = []
        for i, spec in enumerate(specs):
            try:
                parsed.append(parse(spec))
            except BadWindow as exc:
                problems.append((f"{key}[{i}]", str(exc)))
        rules.append(WindowRule(glob, tuple(parsed)))
    return zone, tuple(rules)


def _zone_known(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True
