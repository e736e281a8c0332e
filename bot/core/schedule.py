"""When a scheduled command runs: ``at 22:00`` (the next 22:00 in the configured time zone,
today or tomorrow), ``at 2026-12-24T06:00`` (that moment; never one in the past), or ``in
90s`` / ``in 30m`` / ``in 2h``. Pure: the clock is passed in."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from bot.core import durations
from bot.core.alerting.ties import ago
from bot.core.windows import WindowRule, describe, is_open, next_open, windows_for

# The job argument of a change made outside its stack's deploy windows on purpose
# (``--now``, confirmed): "now". The worker lets such a job through a closed window.
WINDOW_ARG = "window"
MAX_AHEAD = 7 * 86400  # a schedule further ahead is more likely a typo than a plan
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")
_MOMENT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{1,2}:\d{2}(?::\d{2})?$")


class BadTime(ValueError):
    """A time that cannot be a schedule; the message says why, for chat."""


def when(kind: str, text: str, now: float, zone: str) -> float:
    """The Unix time ``at <text>`` or ``in <text>`` names."""
    tz = ZoneInfo(zone)
    if kind == "in":
        seconds = durations.parse(text)
        if seconds is None or seconds <= 0:
            raise BadTime(f"`{text}` is not a duration such as 90s, 30m or 2h")
        at = now + seconds
    else:
        at = _at(text, now, tz, zone)
    if at - now > MAX_AHEAD:
        raise BadTime(f"{text} is more than {MAX_AHEAD // 86400} days ahead")
    return at


def _at(text: str, now: float, tz: ZoneInfo, zone: str) -> float:
    clock = _CLOCK.match(text)
    if clock:
        hour, minute, second = (int(g or 0) for g in clock.groups())
        if not (hour < 24 and minute < 60 and second < 60):
            raise BadTime(f"`{text}` is not a time of day")
        today = datetime.fromtimestamp(now, tz)
        at = today.replace(hour=hour, minute=minute, second=second, microsecond=0)
        if at.timestamp() <= now:
            at = (today + timedelta(days=1)).replace(
                hour=hour, minute=minute, second=second, microsecond=0
            )
        return at.timestamp()
    if _MOMENT.match(text):
        try:
            at = datetime.fromisoformat(text).replace(tzinfo=tz)
        except ValueError:
            raise BadTime(f"`{text}` is not a date and time") from None
        if at.timestamp() <= now:
            raise BadTime(f"{text} ({zone}) is in the past")
        return at.timestamp()
    raise BadTime(f"`{text}` is not a time such as 22:00 or 2026-12-24T06:00")


def say(at: float, now: float, zone: str) -> str:
    """``22:00 Europe/Berlin (in 5 h 2 min)``; the date too when it is not today."""
    tz = ZoneInfo(zone)
    moment, today = datetime.fromtimestamp(at, tz), datetime.fromtimestamp(now, tz)
    shown = moment.strftime("%H:%M:%S" if moment.second else "%H:%M")
    if moment.date() != today.date():
        shown = moment.strftime("%a %Y-%m-%d ") + shown
    return f"{shown} {zone} (in {ago(at - now)})"


def window_refusal(rules: tuple[WindowRule, ...], zone: str, stack: str, now: float) -> str:
    """The worker's check when a job takes its stack: "" while the stack's windows are
    open (or it has none), else why not and when they open."""
    windows = windows_for(stack, rules)
    if windows is None:
        return ""
    at = datetime.fromtimestamp(now, ZoneInfo(zone))
    if is_open(windows, at):
        return ""
    opens = next_open(windows, at).timestamp()
    return (
        f"{stack} is outside its deploy windows ({describe(windows)}, {zone}): the next "
        f"opens {say(opens, now, zone)}"
    )
