"""Splitting long replies for chat platforms: between rows, never inside one."""

from __future__ import annotations

import pytest

from bot.chat.adapters.matrix_render import (
    MAX_CONTENT_BYTES,
    content_size,
    contents,
    html,
    strip_reply_fallback,
)
from bot.core.replies import Reply, Table, render_plain, split_reply

pytestmark = pytest.mark.unit


def big_reply(rows: int) -> Reply:
    table = Table(
        ("SERVICE", "MODE", "REPLICAS"),
        tuple((f"stack_service-{i:04d}", "replicated", f"{i % 3}/2") for i in range(rows)),
        frozenset(i for i in range(rows) if i % 3 < 2),
    )
    return Reply(f"{rows} services", table, detail=("(3 more in stacks you may not see)",))


def test_small_reply_is_one_message() -> None:
    assert len(contents(big_reply(5))) == 1


def test_long_reply_is_split_between_rows_with_headers_and_flags_kept() -> None:
    reply = big_reply(3000)
    parts = split_reply(reply, content_size, MAX_CONTENT_BYTES)
    assert len(parts) > 1
    assert all(content_size(p) <= MAX_CONTENT_BYTES for p in parts)
    rows = [row for p in parts if p.table for row in p.table.rows]
    assert rows == list(reply.table.rows), "rows lost, doubled or reordered"
    flagged = [
        row for p in parts if p.table for i, row in enumerate(p.table.rows) if i in p.table.flagged
    ]
    assert flagged == [row for i, row in enumerate(reply.table.rows) if i in reply.table.flagged]
    assert parts[-1].detail == reply.detail
    assert parts[1].text == "3000 services (continued)"
    for part in (p for p in parts if p.table):
        assert render_plain(part).splitlines()[1].split() == ["SERVICE", "MODE", "REPLICAS"]
        assert html(part).count("<tr>") == len(part.table.rows) + 1


def test_reply_fallback_is_not_read_as_the_command() -> None:
    assert strip_reply_fallback("> <@a:x> !deploy dev\n> more\n\nthanks") == "thanks"
    assert strip_reply_fallback("!services") == "!services"


def test_html_escapes_what_it_shows() -> None:
    reply = Reply("no service `<script>`", Table(("A",), (("<b>x</b>",),)))
    out = html(reply)
    assert "<script>" not in out and "&lt;b&gt;x&lt;/b&gt;" in out
