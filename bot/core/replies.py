"""The one vocabulary between chat platforms and the rest of the bot.

Adapters turn platform events into ``Message`` and render ``Reply`` in their own markup
(plain text for the terminal, HTML for Matrix, Block Kit for Slack); nothing above the
adapters imports a chat library.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

from bot.core.scrub import masker

_SURROGATE = re.compile(r"[\ud800-\udfff]")
INVALID = "\ufffd"


def clean_text(text: str) -> str:
    """``text`` made storable: a surrogate in a Python string is always unpaired (invalid
    UTF-8 read with ``surrogateescape``, a JSON ``\\ud800`` escape) and cannot be encoded,
    so Redis, the audit trail and the log would fail on it. It becomes U+FFFD, which the
    parser then refuses with a clear message."""
    return _SURROGATE.sub(INVALID, text)


@dataclass(frozen=True)
class Message:
    """A chat message as the bot sees it. ``user_id`` is the stable platform ID.

    Any text is accepted: whatever an adapter received is cleaned on the way in."""

    platform: str
    user_id: str
    room: str
    text: str
    # The adapter's own reference for answering in the right place (thread, event id).
    ref: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("platform", "user_id", "room", "text"):
            object.__setattr__(self, name, clean_text(getattr(self, name)))
        object.__setattr__(
            self, "ref", {clean_text(k): clean_text(v) for k, v in self.ref.items()}
        )


@dataclass(frozen=True)
class Table:
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    flagged: frozenset[int] = frozenset()  # rows that need attention (unhealthy, failed)


ReplyStatus = Literal["info", "ok", "failed", "error", "refused", "queued", "progress"]


@dataclass(frozen=True)
class Reply:
    """What the bot says: a headline, an optional table, optional lines after it."""

    text: str
    table: Table | None = None
    detail: tuple[str, ...] = ()
    status: ReplyStatus = "info"
    job: str | None = None
    # A queued job that will not start at once (behind another job's lock, every worker
    # slot busy, no worker online): chat says "queued" now rather than after a delay.
    waits: bool = False


FLAG = "⚠"


def masked(reply: Reply) -> Reply:
    """``reply`` with every secret this process holds masked (see ``bot.core.scrub``): the last
    step before any adapter shows it, whichever command produced it."""
    mask = masker()
    table = reply.table
    if table is not None:
        table = Table(
            table.columns,
            tuple(tuple(mask.text(c) for c in row) for row in table.rows),
            table.flagged,
        )
    return replace(
        reply,
        text=mask.text(reply.text),
        table=table,
        detail=tuple(mask.text(line) for line in reply.detail),
    )


def render_plain(reply: Reply) -> str:
    """Plain text: what the terminal prints and the fallback body of rich messages."""
    lines = [reply.text]
    if reply.table is not None:
        lines.extend(render_table_plain(reply.table))
    lines.extend(reply.detail)
    return "\n".join(lines)


def render_table_plain(table: Table) -> list[str]:
    if not table.rows:
        return []
    marker = bool(table.flagged)
    widths = [
        max(len(str(c)) for c in col) for col in zip(table.columns, *table.rows, strict=True)
    ]

    def line(cells: tuple[str, ...], flag: str) -> str:
        text = "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()
        return f"{flag} {text}" if marker else text

    out = [line(table.columns, " ")]
    out.extend(line(row, FLAG if i in table.flagged else " ") for i, row in enumerate(table.rows))
    return out


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def ago(stamp: float, now: float | None = None) -> str:
    """A timestamp as operators read it in chat: ``4m ago``."""
    if not stamp:
        return "-"
    seconds = max(0, int((now or time.time()) - stamp))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def code(text: str, limit: int = 40) -> str:
    """Echo user input safely: printable, short, and unable to break out of `code`."""
    shown = "".join(ch if ch.isprintable() else "?" for ch in text).replace("`", "'")
    return f"`{shown[:limit]}{'…' if len(shown) > limit else ''}`"


def split_reply(reply: Reply, size: Callable[[Reply], int], limit: int) -> list[Reply]:
    """Split a reply too large for one platform message into several.

    Cuts only between table rows (each part repeats the header) and between detail lines,
    never inside a row: a reader must never see half a row. ``size`` measures a reply as
    the platform will send it.
    """
    if size(reply) <= limit:
        return [reply]
    parts: list[Reply] = []
    table = reply.table
    current = replace(reply, table=_rows(table, []), detail=())
    rows = list(enumerate(table.rows)) if table else []
    kept: list[tuple[int, tuple[str, ...]]] = []
    for index, row in rows:
        trial = replace(current, table=_rows(table, [*kept, (index, row)]))
        if kept and size(trial) > limit:
            parts.append(replace(current, table=_rows(table, kept)))
            current = replace(reply, text=f"{reply.text} (continued)", table=None, detail=())
            kept = []
        kept.append((index, row))
    current = replace(current, table=_rows(table, kept) if kept else None)
    lines: list[str] = []
    for line in reply.detail:
        trial = replace(current, detail=(*lines, line))
        if (lines or current.table) and size(trial) > limit:
            parts.append(replace(current, detail=tuple(lines)))
            current = replace(reply, text=f"{reply.text} (continued)", table=None, detail=())
            lines = []
        lines.append(line)
    parts.append(replace(current, detail=tuple(lines)))
    return parts


def _rows(table: Table | None, rows: list[tuple[int, tuple[str, ...]]]) -> Table | None:
    if table is None:
        return None
    flagged = frozenset(i for i, (orig, _row) in enumerate(rows) if orig in table.flagged)
    return Table(table.columns, tuple(row for _i, row in rows), flagged)
