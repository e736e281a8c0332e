"""Deploy windows: "production changes only on weekdays before 16:00". ``[windows]`` maps
stack globs to windows such as ``Mon-Fri 09:00-16:00``, ``Sat,Sun 10:00-12:00`` or
``daily 22:00-02:00`` (an end before its start runs past midnight; seconds may be given,
``09:00:30``), in one time zone.

A change to a stack outside its windows is refused with when the next one opens (or
scheduled for it, or made at once after a confirmation); an ``auto`` change from git or the
registry waits for it. A stack no glob matches is always open. Pure: the clock is passed in.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TIME = r"(\d{1,2}):(\d{2})(?::(\d{2}))?"
_SPEC = re.compile(rf"^\s*([A-Za-z,\-]+)\s+{_TIME}\s*-\s*{_TIME}\s*$")


class BadWindow(ValueError):
    """A window that cannot be read; the message says why."""


@dataclass(frozen=True)
class Window:
    days: frozenset[int]  # 0 = Monday
    start: int  # seconds after midnight
    end: int  # seconds after midnight; at or before ``start``: the window runs past midnight
    text: str

    def open_at(self, at: datetime) -> bool:
        minute = at.hour * 3600 + at.minute * 60 + at.second
        if self.start < self.end:
            return at.weekday() in self.days and self.start <= minute < self.end
        return (at.weekday() in self.days and minute >= self.start) or (
            (at.weekday() - 1) % 7 in self.days and minute < self.end
        )


@dataclass(frozen=True)
class WindowRule:
    glob: str
    windows: tuple[Window, ...]


def parse(text: str) -> Window:
    found = _SPEC.match(text)
    if found is None:
        raise BadWindow(f'{text!r} is not a window like "Mon-Fri 09:00-16:00"')
    days_text, h1, m1, s1, h2, m2, s2 = found.groups()
    days = _days(days_text)
    start = _second(int(h1), int(m1), int(s1 or 0), text)
    end = _second(int(h2), int(m2), int(s2 or 0), text)
    if start == end:
        raise BadWindow(f"{text!r} opens and closes at the same time")
    return Window(days, start, end, text.strip())


def _days(text: str) -> frozenset[int]:
    if text.lower() == "daily":
        return frozenset(range(7))
    days: set[int] = set()
    for part in text.lower().split(","):
        first, _, last = part.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise BadWindow(f"{part!r} is not a day or range of days (Mon-Fri, Sat,Sun, daily)")
        a, b = DAYS.index(first), DAYS.index(last or first)
        days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return frozenset(days)


def _second(hour: int, minute: int, second: int, text: str) -> int:
    if (hour, minute, second) == (24, 0, 0):
        return 24 * 3600
    if not (0 <= hour < 24 and 0 <= minute < 60 and 0 <= second < 60):
        raise BadWindow(f"{text!r} has a time that is not on a clock")
    return hour * 3600 + minute * 60 + second


def windows_for(stack: str, rules: Sequence[WindowRule]) -> tuple[Window, ...] | None:
    """The windows of the first rule whose glob matches ``stack``; None: always open."""
    return next((r.windows for r in rules if fnmatch.fnmatchcase(stack, r.glob)), None)


def is_open(windows: tuple[Window, ...] | None, at: datetime) -> bool:
    return windows is None or any(w.open_at(at) for w in windows)


def next_open(windows: tuple[Window, ...] | None, at: datetime) -> datetime:
    """When a change to the stack may next be made: ``at`` itself when open now. ``at``
    is timezone-aware, in the windows' zone; the answer is too (DST included)."""
    if is_open(windows, at):
        return at
    assert windows is not None
    best: datetime | None = None
    for days in range(8):
        day = (at + timedelta(days=days)).date()
        for window in windows:
            if day.weekday() not in window.days:
                continue
            hour, rest = divmod(window.start, 3600)
            minute, second = divmod(rest, 60)
            begin = datetime(
                day.year, day.month, day.day, hour % 24, minute, second, tzinfo=at.tzinfo
            )
            if begin > at and (best is None or begin < best):
                best = begin
        if best is not None:
            return best
    raise AssertionError("a window opens at least once a week")


def describe(windows: tuple[Window, ...]) -> str:
    return ", ".join(w.text for w in windows)
