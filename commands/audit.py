"""``!audit [stack|service] [since]``: who ran what, what was decided, how it ended.

What a user sees follows their roles: their own entries and those about stacks one of
their roles covers (an admin: all). A confirmation code shows only to whoever may confirm
it: the requester, and where someone else may (a change the watcher proposed, a stack
that needs a second approver) those allowed to run that command on that stack; to others
it reads ``(code hidden)``."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

from bot.core.config import AUTOMATION_USER
from bot.core.ids import matches_any
from bot.core.replies import Reply, Table
from commands.base import Arg, Command, Context

SINCE = re.compile(r"^([0-9]{1,4})([mhd])$")
UNITS = {"m": 60, "h": 3600, "d": 86400}
SHOWN = 25
BAD = ("refused", "invalid", "rate-limited", "failed", "rejected", "expired", "not-queued")
CODE_DECISIONS = ("confirmation-asked", "confirmed", "approved")


def _visible(ctx: Context, entries: list[dict[str, str]]) -> list[dict[str, str]]:
    """The entries this user may read, codes hidden where they may not confirm them."""
    user = ctx.message.user_id
    if ctx.policy.is_admin(user) and not ctx.config.swarms:
        return entries
    out = []
    for e in entries:
        mine, stack = e.get("who") == user, e.get("stack", "")
        if not mine and not ctx.policy.on(e.get("swarm", "")).may_see(user, stack):
            continue
        if e.get("decision") in CODE_DECISIONS and not mine and not _may_confirm(ctx, e):
            e = {**e, "reason": "(code hidden)"}
        out.append(e)
    return out


def _may_confirm(ctx: Context, e: dict[str, str]) -> bool:
    """Could this user confirm (or approve) the code in entry ``e``? Only where someone
    other than the requester may: a change the watcher proposed (anyone allowed to run
    it), or a stack that needs a second approver; and only with the rights to run it."""
    stack = e.get("stack", "")
    words = e.get("command", "").split()
    name = words[0].removeprefix(ctx.config.prefix).split("@")[0] if words else ""
    others_may = e.get("who") == AUTOMATION_USER or matches_any(
        stack, ctx.config.second_approver_stacks
    )
    return bool(
        others_may and name and ctx.policy.may_touch(ctx.message.user_id, name, stack).allowed
    )


async def answer(ctx: Context, args: dict[str, str]) -> Reply:
    what, since = args.get("what"), args.get("since")
    if what and not since and SINCE.match(what):
        what, since = None, what
    window = "1d"
    if since:
        match = SINCE.match(since)
        if match is None:
            return Reply(f"`{since}` is not a time span such as 30m, 6h or 2d", status="error")
        window = since
    amount, unit = SINCE.match(window).groups()  # type: ignore[union-attr]
    start = time.time() - int(amount) * UNITS[unit]
    entries = _visible(ctx, await ctx.queue.audit_since(start))
    if what:
        entries = [e for e in entries if what in e.get("command", "") or what == e.get("stack")]
    shown = entries[:SHOWN]
    if not shown:
        return Reply(
            f"nothing in the audit log for the last {window}" + (f" about {what}" if what else "")
        )
    several = len(ctx.config.swarms) > 1
    swarm_column = ("SWARM",) if several else ()
    table = Table(
        ("WHEN (UTC)", "WHO", *swarm_column, "COMMAND", "DECISION", "JOB", "DETAIL"),
        tuple(
            (
                datetime.fromtimestamp(float(e.get("at", 0)), UTC).strftime("%m-%d %H:%M:%S"),
                e.get("who", ""),
                *((e.get("swarm", ""),) if several else ()),
                e.get("command", "")[:40],
                e.get("decision", ""),
                e.get("job", ""),
                (e.get("reason") or e.get("outcome") or "")[:60],
            )
            for e in shown
        ),
        frozenset(i for i, e in enumerate(shown) if e.get("decision", "").startswith(BAD)),
    )
    more = f" (newest {SHOWN} of {len(entries)})" if len(entries) > SHOWN else ""
    return Reply(f"audit log, last {window}{' about ' + what if what else ''}{more}:", table)


COMMAND = Command(
    name="audit",
    summary="show the audit log: commands, decisions and outcomes, newest first",
    args=(
        Arg(
            "what",
            re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"),
            "a stack or service name",
            optional=True,
            shown="stack|service",
        ),
        Arg("since", SINCE, "a time span such as 30m, 6h or 2d", optional=True),
    ),
    examples=("!audit", "!audit dev 2h", "!audit 30m"),
    answer=answer,
)
