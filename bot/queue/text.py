"""Redis replies as text, whichever way the client was built."""

from __future__ import annotations

from typing import Any


def s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
