"""``!silence <matchers> <duration> <reason>``: a real silence in Alertmanager, made in the
name of the chat user's stable ID, audited like every command. One longer than
``alerts.confirm_silence_over_seconds`` is confirmed first; none may be longer than
``alerts.max_silence_seconds``."""

from __future__ import annotations

import re
import time

from bot.core import durations
from bot.core.alerting.api import AlertApiError
from bot.core.alerting.matchers import BadMatchers, parse
from bot.core.config import Config
from bot.core.replies import Reply
from commands.alerts import api_of
from commands.base import Arg, Command, Context

MATCHERS = re.compile(r'^[{}A-Za-z0-9_=~!",.|*+?()\[\]^$:/\\ -]{1,500}$')
REASON = re.compile(r"^\S.{0,299}$")


async def answer(ctx: Context, args: dict[str, str]) -> Reply:
    api = api_of(ctx)
    if isinstance(api, Reply):
        return api
    assert ctx.config.alerts is not None  # api_of: alerts are configured
    try:
        matchers = parse(args["matchers"])
    except BadMatchers as exc:
        return Reply(f"those matchers cannot be read: {exc}", status="error")
    seconds = durations.parse(args["duration"]) or 0
    longest = ctx.config.alerts.max_silence_seconds
    if seconds < 60:
        return Reply("a silence lasts at least a minute (1m)", status="error")
    if seconds > longest:
        return Reply(
            f"a silence may last at most {durations.say(longest)} (alerts.max_silence_seconds)",
            status="error",
        )
    now = time.time()
    try:
        silence_id = await api.silence(
            matchers, now, now + seconds, ctx.message.user_id, args["reason"]
        )
    except AlertApiError as exc:
        return Reply(str(exc), status="error")
    until = time.strftime("%H:%M UTC", time.gmtime(now + seconds))
    shown = ",".join(str(m) for m in matchers)
    return Reply(
        f"silenced {shown} for {durations.say(seconds)} (until {until}): silence {silence_id}; "
        f"{ctx.config.prefix}unsilence {silence_id} ends it",
        status="ok",
    )


def _long(config: Config, args: dict[str, str], user: str) -> bool:
    """Longer than ``confirm_silence_over_seconds``; one over the maximum is refused at once
    instead (no confirmation that could only end in a refusal)."""
    seconds = durations.parse(args.get("duration", "")) or 0
    alerts = config.alerts
    return (
        alerts is not None
        and alerts.confirm_silence_over_seconds < seconds <= alerts.max_silence_seconds
    )


COMMAND = Command(
    name="silence",
    summary="silence alerts in Alertmanager: matchers as in Alertmanager "
    '(alertname="X",stack=~"dev|ci"), a duration (90m, 2h, 1d) and a reason',
    args=(
        Arg("matchers", MATCHERS, 'matchers such as alertname="HighLatency"'),
        Arg("duration", durations.PATTERN, "a duration such as 30m, 2h or 1d"),
        Arg("reason", REASON, "a reason", rest=True),
    ),
    examples=('!silence alertname="HighLatency",stack="dev" 2h migrating the database',),
    answer=answer,
    always_confirm=_long,
    confirm_text=lambda args: (
        f"this silences {args.get('matchers', '?')} for {args.get('duration', '?')}"
    ),
)
