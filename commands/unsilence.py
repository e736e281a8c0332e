"""``!unsilence <id>``: end a silence now (Alertmanager expires it)."""

from __future__ import annotations

import re

from bot.core.alerting.api import AlertApiError
from bot.core.replies import Reply
from commands.alerts import api_of
from commands.base import Arg, Command, Context

SILENCE_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


async def answer(ctx: Context, args: dict[str, str]) -> Reply:
    api = api_of(ctx)
    if isinstance(api, Reply):
        return api
    try:
        await api.unsilence(args["id"])
    except AlertApiError as exc:
        return Reply(str(exc), status="error")
    return Reply(f"silence {args['id']} ended", status="ok")


COMMAND = Command(
    name="unsilence",
    summary="end a silence now (its ID from !silences)",
    args=(Arg("id", SILENCE_ID, "a silence ID (from !silences)"),),
    examples=("!unsilence 8a3c1a1e-2f6d-4b7e-9a51-0c2d3e4f5a6b",),
    answer=answer,
)
