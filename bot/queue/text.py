"""Redis replies as the text they are.

Every client is built with ``decode_responses=True``, but redis-py types its replies as
``bytes | str`` unions (and stream reads as nested unions), so each reply is narrowed here,
once, instead of being cast at every call site.
"""

from __future__ import annotations

from typing import Any

Fields = dict[Any, Any]  # what redis-py accepts for a hash or a stream entry


def s(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def fields(value: Any) -> dict[str, str]:
    """A hash or a stream entry's fields as text (empty for a missing one)."""
    if not isinstance(value, dict):
        return {}
    return {s(k): s(v) for k, v in value.items()}


def entries(value: Any, keep_deleted: bool = False) -> list[tuple[str, dict[str, str]]]:
    """Stream entries (``XRANGE``, ``XCLAIM``: a list of ``(id, fields)``). An entry
    deleted from the stream comes back without fields: dropped, or kept with none (so that
    a reader can acknowledge it) with ``keep_deleted``."""
    out: list[tuple[str, dict[str, str]]] = []
    for item in value or []:
        if isinstance(item, list | tuple) and len(item) == 2 and (item[1] or keep_deleted):
            out.append((s(item[0]), fields(item[1])))
    return out


def stream_entries(value: Any) -> list[tuple[str, dict[str, str]]]:
    """The entries of an ``XREADGROUP`` reply (a list of ``(stream, entries)``)."""
    out: list[tuple[str, dict[str, str]]] = []
    for item in value or []:
        if isinstance(item, list | tuple) and len(item) == 2:
            out += entries(item[1], keep_deleted=True)
    return out


def wire(mapping: dict[str, str]) -> Fields:
    """A mapping as redis-py's write commands type their argument."""
    return dict(mapping)
