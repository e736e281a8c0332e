"""Deploy windows and schedules against an injected clock: weekdays, midnight, time zones
(and a DST change), the next opening, `at`/`in` times, and what the parser takes off a
command. Pure: no Redis, no swarm."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from bot.chat.parsing import Invocation, parse
from bot.core.schedule import BadTime, when
from bot.core.windows import BadWindow, WindowRule, is_open, next_open, windows_for
from bot.core.windows import parse as window
from commands import REGISTRY

BERLIN = ZoneInfo("Europe/Berlin")
WORKDAYS = (window("Mon-Fri 09:00-16:00"),)
NIGHTS = (window("daily 22:00-02:00"),)


def at(text: str, zone: ZoneInfo = BERLIN) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=zone)


@pytest.mark.parametrize(
    ("moment", "windows", "open_"),
    [
        ("2026-12-07 09:00", WORKDAYS, True),  # a Monday, at the opening
        ("2026-12-07 08:59:59", WORKDAYS, False),
        ("2026-12-07 15:59:59", WORKDAYS, True),
        ("2026-12-07 16:00", WORKDAYS, False),  # the end is not in the window
        ("2026-12-12 10:00", WORKDAYS, False),  # a Saturday
        ("2026-12-07 23:30", NIGHTS, True),
        ("2026-12-08 01:59", NIGHTS, True),  # past midnight, from the day before
        ("2026-12-08 02:00", NIGHTS, False),
        ("2026-12-08 12:00", NIGHTS, False),
    ],
)
def test_a_window_is_open_from_its_start_until_before_its_end(
    moment: str, windows: tuple, open_: bool
) -> None:
    assert is_open(windows, at(moment)) is open_


def test_windows_are_read_in_their_time_zone() -> None:
    # 08:30 UTC on a Monday is 09:30 in Berlin (winter): open there, not in UTC.
    utc = datetime(2026, 12, 7, 8, 30, tzinfo=ZoneInfo("UTC"))
    assert is_open(WORKDAYS, utc.astimezone(BERLIN))
    assert not is_open(WORKDAYS, utc)


@pytest.mark.parametrize(
    ("moment", "opens"),
    [
        ("2026-12-07 07:00", "2026-12-07 09:00"),  # later that day
        ("2026-12-11 17:00", "2026-12-14 09:00"),  # Friday evening: Monday
        ("2026-12-12 12:00", "2026-12-14 09:00"),  # Saturday
        ("2026-12-07 10:00", "2026-12-07 10:00"),  # open now: now
    ],
)
def test_the_next_opening(moment: str, opens: str) -> None:
    assert next_open(WORKDAYS, at(moment)) == at(opens)


def test_the_next_opening_across_a_dst_change_keeps_the_wall_clock() -> None:
    # Berlin moves to summer time on 2027-03-28: Monday's 09:00 is 07:00 UTC, not 08:00.
    opens = next_open(WORKDAYS, at("2027-03-27 12:00"))
    assert opens == at("2027-03-29 09:00")
    assert opens.astimezone(ZoneInfo("UTC")).hour == 7


@pytest.mark.parametrize(
    ("spec", "said"),
    [
        ("weekdays 09:00-16:00", "is not a day"),
        ("Mon-Fri 9-16", "is not a window"),
        ("Mon 25:00-26:00", "not on a clock"),
        ("Mon 10:00-10:00", "same time"),
    ],
)
def test_a_window_that_cannot_be_read_says_why(spec: str, said: str) -> None:
    with pytest.raises(BadWindow, match=said):
        window(spec)


def test_the_first_rule_whose_glob_matches_wins() -> None:
    rules = (WindowRule("prod-db", NIGHTS), WindowRule("prod*", WORKDAYS))
    assert windows_for("prod-db", rules) == NIGHTS
    assert windows_for("prod-web", rules) == WORKDAYS
    assert windows_for("dev", rules) is None  # always open


NOW = at("2026-12-07 21:00").timestamp()


@pytest.mark.parametrize(
    ("kind", "text", "expected"),
    [
        ("in", "90s", NOW + 90),
        ("in", "2h", NOW + 7200),
        ("at", "22:00", at("2026-12-07 22:00").timestamp()),
        ("at", "03:00", at("2026-12-08 03:00").timestamp()),  # passed today: tomorrow
        ("at", "2026-12-10T06:00", at("2026-12-10 06:00").timestamp()),
        ("at", "2026-12-24T06:00", None),  # too far ahead
    ],
)
def test_schedule_times(kind: str, text: str, expected: float | None) -> None:
    if expected is None:
        with pytest.raises(BadTime, match="more than 7 days"):
            when(kind, text, NOW, "Europe/Berlin")
        return
    assert when(kind, text, NOW, "Europe/Berlin") == expected


@pytest.mark.parametrize(
    ("kind", "text", "said"),
    [
        ("at", "2026-12-06T10:00", "in the past"),
        ("at", "tomorrow", "is not a time"),
        ("at", "24:30", "not a time of day"),
        ("in", "soon", "is not a duration"),
        ("in", "0s", "is not a duration"),
    ],
)
def test_times_that_cannot_be_a_schedule_say_why(kind: str, text: str, said: str) -> None:
    with pytest.raises(BadTime, match=said):
        when(kind, text, NOW, "Europe/Berlin")


@pytest.mark.parametrize(
    ("line", "args", "schedule", "flag"),
    [
        ("!deploy dev at 22:00", {"stack": "dev"}, ("at", "22:00"), ""),
        ("!deploy dev --force in 2h", {"stack": "dev", "option": "--force"}, ("in", "2h"), ""),
        ("!deploy dev --when-open", {"stack": "dev"}, None, "when-open"),
        ("!restart web in 90s --now", {"service": "web"}, ("in", "90s"), "now"),
    ],
)
def test_the_parser_takes_the_time_and_the_window_flag_off(
    line: str, args: dict[str, str], schedule: tuple[str, str] | None, flag: str
) -> None:
    parsed = parse(line, "!", REGISTRY)
    assert isinstance(parsed, Invocation), parsed
    assert (parsed.args, parsed.schedule, parsed.window) == (args, schedule, flag)


def test_only_schedulable_commands_take_a_time() -> None:
    parsed = parse("!ps web at 22:00", "!", REGISTRY)
    assert not isinstance(parsed, Invocation)
