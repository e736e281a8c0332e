"""``!alerts``: what fires now, from Alertmanager's API (not only what was told here)."""

from __future__ import annotations

import time
from typing import Any

from bot.core.alerting.api import AlertApi, AlertApiError
from bot.core.alerting.payload import BadPayload, unix_time
from bot.core.alerting.ties import ago
from bot.core.replies import Reply, Table
from commands.base import Command, Context

MAX_ROWS = 50


def api_of(ctx: Context) -> AlertApi | Reply:
    """The API, or the reply that says it is not configured."""
    if ctx.alerts is None:
        return Reply(
            "alerts are not set up: [alerts] alertmanager_url names Alertmanager", status="error"
        )
    return ctx.alerts


def stamp(text: Any) -> float:
    """An RFC 3339 time from the API as Unix time; 0 for anything else."""
    try:
        return unix_time(text)
    except BadPayload:
        return 0.0


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


async def answer(ctx: Context, args: dict[str, str]) -> Reply:
    api = api_of(ctx)
    if isinstance(api, Reply):
        return api
    try:
        found = await api.alerts()
    except AlertApiError as exc:
        return Reply(str(exc), status="error")
    now = time.time()
    rows = []
    for alert in sorted(found, key=lambda a: stamp(a.get("startsAt")))[:MAX_ROWS]:
        labels = _mapping(alert.get("labels"))
        notes = _mapping(alert.get("annotations"))
        state = _mapping(alert.get("status")).get("state", "?")
        where = (
            labels.get("container_label_com_docker_swarm_service_name")
            or labels.get("service")
            or labels.get("instance", "")
        )
        rows.append(
            (
                str(labels.get("alertname", "?")),
                str(where),
                str(labels.get("severity", "")),
                "silenced" if state == "suppressed" else state,
                ago(now - stamp(alert.get("startsAt"))),
                str(notes.get("summary", ""))[:120],
            )
        )
    if not rows:
        return Reply("no alerts firing")
    flagged = frozenset(i for i, row in enumerate(rows) if row[3] == "active")
    active = len(flagged)
    head = f"{active} alert{'s' if active != 1 else ''} firing"
    if len(rows) > active:
        head += f", {len(rows) - active} silenced or inhibited"
    if len(found) > MAX_ROWS:
        head += f" (the oldest {MAX_ROWS} of {len(found)} shown)"
    columns = ("ALERT", "WHERE", "SEVERITY", "STATE", "FOR", "SUMMARY")
    return Reply(head, Table(columns, tuple(rows), flagged))


COMMAND = Command(
    name="alerts",
    summary="the alerts firing now, from Alertmanager",
    examples=("!alerts",),
    answer=answer,
)
