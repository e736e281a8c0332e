"""``!swarm``: which swarm this swarmbot serves, and which daemon, node and swarm each
worker's Docker socket reaches; ``!swarm accept <ID>``: serve another swarm (always
confirmed, and audited). A worker whose daemon is in another swarm than the one served takes
no jobs and tells nothing of that swarm (it says so in ``/healthz`` and one notice); this is
how an admin says the new swarm is the right one, when ``swarm.id`` does not name it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from bot.core.replies import Reply, Table
from commands.base import Arg, Command, Context

SWARM_ID = re.compile(r"^[a-z0-9]{25}$")
CHECK_SECONDS = 15  # the workers' SWARM_CHECK_SECONDS: how soon they see an acceptance


async def answer(ctx: Context, args: dict[str, str]) -> Reply:
    found = await ctx.queue.swarm_found()
    if args.get("action") == "accept":
        return await _accept(ctx, args.get("id", ""), found)
    accepted = ctx.config.swarm_id or await ctx.queue.swarm_accepted() or ""
    if not found:
        return Reply("no worker has said which swarm it reaches (none started in the last hour)")
    rows = [_row(worker, where, accepted) for worker, where in sorted(found.items())]
    flagged = frozenset(i for i, row in enumerate(rows) if row[-1] != "yes")
    table = Table(("WORKER", "DAEMON", "NODE", "SWARM", "SERVED"), tuple(rows), flagged)
    source = "swarm.id" if ctx.config.swarm_id else "accepted"
    name = f" ({ctx.config.swarm_name})" if ctx.config.swarm_name else ""
    head = f"serving swarm {accepted or 'none yet'}{name} ({source})"
    if flagged:
        head += f"; {len(flagged)} worker(s) reach another swarm and take no jobs"
    return Reply(head, table)


def _row(worker: str, where: Mapping[str, Any], accepted: str) -> tuple[str, ...]:
    role = "manager" if where.get("manager") else "not a manager"
    swarm = str(where.get("swarm_id") or "none")
    return (
        worker,
        str(where.get("daemon", "?")),
        f"{where.get('hostname', '?')} ({role})",
        swarm,
        "yes" if swarm == accepted else "NO",
    )


async def _accept(ctx: Context, swarm_id: str, found: dict[str, dict[str, Any]]) -> Reply:
    if not swarm_id:
        return Reply(f"usage: {ctx.config.prefix}swarm accept <swarm ID>", status="error")
    if ctx.config.swarm_id:
        return Reply(
            f"swarm.id in the config names the swarm served ({ctx.config.swarm_id}); change it "
            "there",
            status="error",
        )
    reached = sorted({str(w.get("swarm_id")) for w in found.values() if w.get("swarm_id")})
    if swarm_id not in reached:
        return Reply(
            f"no worker reaches swarm {swarm_id} (they reach: {', '.join(reached) or 'none'})",
            status="error",
        )
    await ctx.queue.accept_swarm(swarm_id, ctx.message.user_id)
    return Reply(
        f"swarm {swarm_id} accepted: the workers on it take jobs again within {CHECK_SECONDS}s",
        status="ok",
    )


COMMAND = Command(
    name="swarm",
    summary="which swarm is served and what each worker reaches; `accept ID` serves "
    "another swarm (always confirmed)",
    args=(
        Arg("action", re.compile(r"^accept$"), "accept", optional=True, shown="accept"),
        Arg("id", SWARM_ID, "a swarm ID (25 letters and digits)", optional=True),
    ),
    examples=("!swarm", "!swarm accept 3x9k2m7q8w1e5r4t6y0u2i8o7p"),
    answer=answer,
    swarm_state=True,
    # Pointing every worker at another swarm: always confirmed.
    always_confirm=lambda _config, args, _user: args.get("action") == "accept",
    confirm_text=lambda args: (
        f"this points every worker at swarm {args.get('id', '?')}: they take jobs there and "
        "tell its changes from now on"
    ),
)
