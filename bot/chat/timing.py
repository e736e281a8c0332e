"""When a command may run: now, at the time it names (``at 22:00``, ``in 2h``), or — for a
change to a stack outside its deploy windows — not now (refused with when the next window
opens), at that opening (``--when-open``), or now after a confirmation (``--now``).

The worker checks the windows again when the job takes its stack, so a job scheduled or
queued while a window was open does not run after it closed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from bot.core.config import Config
from bot.core.schedule import BadTime, say, when
from bot.core.windows import describe, is_open, next_open, windows_for
from commands.base import Command


@dataclass(frozen=True)
class Timing:
    not_before: float = 0.0  # 0: at once
    override: bool = False  # --now outside the stack's windows: confirmed first
    refusal: str = ""  # why it may not run as asked


def decide(
    config: Config,
    command: Command,
    stack: str,
    schedule: tuple[str, str] | None,
    flag: str,
    now: float,
) -> Timing:
    not_before = 0.0
    if schedule is not None:
        try:
            not_before = when(*schedule, now, config.timezone)
        except BadTime as exc:
            return Timing(refusal=str(exc))
    rules = windows_for(stack, config.windows) if stack and stack != "all" else None
    if rules is None or command.notice is None:
        return Timing(not_before)
    zone = config.timezone
    at = datetime.fromtimestamp(not_before or now, ZoneInfo(zone))
    if is_open(rules, at):
        return Timing(not_before)
    if flag == "now":
        if not_before:
            return Timing(refusal="--now runs it now: leave out the time, or use --when-open")
        return Timing(override=True)
    opens = next_open(rules, at).timestamp()
    if flag == "when-open":
        return Timing(opens)
    when_asked = f" at {say(not_before, now, zone)}" if not_before else ""
    return Timing(
        refusal=(
            f"{stack} is outside its deploy windows ({describe(rules)}, {zone}){when_asked}: "
            f"the next opens {say(opens, now, zone)}; add --when-open to run it then, or "
            "--now to run it now (after a confirmation)"
        )
    )
