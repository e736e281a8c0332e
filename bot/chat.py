"""The one vocabulary between chat platforms and the rest of the bot.

Adapters turn platform events into ``Message`` and render ``Reply`` in their own markup
(plain text for the terminal, HTML for Matrix, Block Kit for Slack); nothing above the
adapters imports a chat library.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Message:
    """A chat message as the bot sees it. ``user_id`` is the stable platform ID."""

    platform: str
    user_id: str
    room: str
    text: str
    # The adapter's own reference for answering in the right place (thread, event id).
    ref: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Table:
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    flagged: frozenset[int] = frozenset()  # rows that need attention (unhealthy, failed)


@dataclass(frozen=True)
class Reply:
    """What the bot says: a headline, an optional table, optional lines after it."""

    text: str
    table: Table | None = None
    detail: tuple[str, ...] = ()
    status: str = "info"  # info | ok | failed | error | refused | queued | progress
    job: str | None = None


FLAG = "⚠"


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
