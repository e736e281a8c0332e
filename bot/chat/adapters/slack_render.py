"""Slack messages: Block Kit sections (tables in code blocks) plus a plain ``text`` fallback.

Slack caps a section's text at 3,000 characters and a message at 50 blocks; replies are
split between table rows to stay under both, and every part keeps the table header.
"""

from __future__ import annotations

from typing import Any

from bot.core.replies import Reply, render_plain, render_table_plain, split_reply

SECTION_LIMIT = 2_900
BAD_STATUSES = {"failed", "error", "refused"}


def escape(text: str) -> str:
    """Slack's mrkdwn needs only these three escaped; user text can then not ping @channel."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def unescape(text: str) -> str:
    """Incoming message text arrives escaped the same way."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _sections(reply: Reply) -> list[str]:
    head = escape(reply.text)
    texts = [f"*{head}*" if reply.status in BAD_STATUSES else head]
    if reply.table is not None and reply.table.rows:
        texts.append("```\n" + escape("\n".join(render_table_plain(reply.table))) + "\n```")
    if reply.detail:
        texts.append(escape("\n".join(reply.detail)))
    return texts


def size(reply: Reply) -> int:
    """The largest section a reply renders to: what Slack's limit applies to."""
    return max(len(text) for text in _sections(reply))


def message(reply: Reply) -> dict[str, Any]:
    """``chat.postMessage``/``chat.update`` arguments: blocks and the plain fallback."""
    return {"text": escape(render_plain(reply)), "blocks": [_section(t) for t in _sections(reply)]}


def messages(reply: Reply) -> list[dict[str, Any]]:
    return [message(part) for part in split_reply(reply, size, SECTION_LIMIT)]
