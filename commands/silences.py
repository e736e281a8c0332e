"""``!silences``: the silences active or waiting to start, from Alertmanager."""

from __future__ import annotations

import time

from bot.core.alerting.api import AlertApiError
from bot.core.alerting.matchers import Matcher
from bot.core.replies import Reply, Table
from commands.alerts import api_of, stamp
from commands.base import Command, Context

MAX_ROWS = 50


async def answer(ctx: Context, args: dict[str, str]) -> Reply:
    api = api_of(ctx)
    if isinstance(api, Reply):
        return api
    try:
        found = await api.silences()
    except AlertApiError as exc:
        return Reply(str(exc), status="error")
    live = [s for s in found if _state(s) in ("active", "pending")]
    live.sort(key=lambda s: stamp(s.get("endsAt")))
    if not live:
        return Reply("no silences")
    rows = tuple(_row(s) for s in live[:MAX_ROWS])
    head = f"{len(live)} silence{'s' if len(live) != 1 else ''}"
    return Reply(head, Table(("ID", "MATCHERS", "UNTIL", "BY", "REASON"), rows))


def _state(silence: dict[str, object]) -> str:
    status = silence.get("status")
    return str(status.get("state", "")) if isinstance(status, dict) else ""


def _row(silence: dict[str, object]) -> tuple[str, ...]:
    matchers = silence.get("matchers")
    shown = []
    for m in matchers if isinstance(matchers, list) else []:
        if isinstance(m, dict):
            op = ("=" if m.get("isEqual", True) else "!") + ("~" if m.get("isRegex") else "=")
            op = {"==": "=", "!=": "!=", "=~": "=~", "!~": "!~"}[op]
            shown.append(str(Matcher(str(m.get("name")), op, str(m.get("value")))))
    until = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(stamp(silence.get("endsAt"))))
    state = _state(silence)
    return (
        str(silence.get("id", "?")),
        ",".join(shown),
        until + (" (pending)" if state == "pending" else ""),
        str(silence.get("createdBy", "")),
        str(silence.get("comment", ""))[:100],
    )


COMMAND = Command(
    name="silences",
    summary="the silences active or waiting to start, from Alertmanager",
    examples=("!silences",),
    answer=answer,
)
