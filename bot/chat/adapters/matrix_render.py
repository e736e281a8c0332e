"""Matrix message content: ``m.notice`` with an HTML body and a readable plain ``body``.

Notices, not text messages: other bots ignore notices by convention, so two bots in one
room can never trigger each other.
"""

from __future__ import annotations

from html import escape
from typing import Any

from bot.core.replies import FLAG, Reply, Table, render_plain, split_reply

# The spec caps an event at 65,536 bytes of JSON; the body and HTML body together stay
# well under it, leaving room for relations and JSON escaping.
MAX_CONTENT_BYTES = 24_000
HTML_FORMAT = "org.matrix.custom.html"
BAD_STATUSES = {"failed", "error", "refused"}


def html(reply: Reply) -> str:
    head = escape(reply.text)
    if reply.status in BAD_STATUSES:
        head = f"<strong>{head}</strong>"
    out = [f"<p>{head}</p>"]
    if reply.table is not None and reply.table.rows:
        out.append(_table(reply.table))
    if reply.detail:
        out.append("<p>" + "<br>".join(escape(line) for line in reply.detail) + "</p>")
    return "".join(out)


def _table(table: Table) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in table.columns)
    rows = []
    for i, row in enumerate(table.rows):
        cells = [escape(str(c)) for c in row]
        if i in table.flagged:
            cells[0] = f"{FLAG} <strong>{cells[0]}</strong>"
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def content(reply: Reply) -> dict[str, Any]:
    return {
        "msgtype": "m.notice",
        "body": render_plain(reply),
        "format": HTML_FORMAT,
        "formatted_body": html(reply),
    }


def content_size(reply: Reply) -> int:
    c = content(reply)
    return len(c["body"].encode()) + len(c["formatted_body"].encode())


def contents(reply: Reply) -> list[dict[str, Any]]:
    """One or more message contents, split between rows when one event would be too big."""
    return [content(part) for part in split_reply(reply, content_size, MAX_CONTENT_BYTES)]


def strip_reply_fallback(body: str) -> str:
    """Drop the ``> <@user> quoted text`` lines a client puts before a reply, so a reply
    that quotes an old command is never read as that command."""
    lines = body.splitlines()
    while lines and lines[0].startswith(">"):
        lines.pop(0)
    if lines and not lines[0].strip():
        lines.pop(0)
    return "\n".join(lines)
