"""Scrub secrets from text that goes to chat: service logs, CLI errors, task errors.

Two layers: the values of the service's own environment (whatever they are, they are
not for chat), and patterns that look like credentials wherever they appear.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "***"
_PATTERNS = [
    # first, so "Authorization: Bearer x" masks the token, not the word Bearer
    re.compile(r"(?i)(bearer\s+)([A-Za-z0-9._~+/=-]{8,})"),
    re.compile(r"(?i)(basic\s+)([A-Za-z0-9+/=]{8,})"),
    # key=value / key: value / "key": "value" for names that usually hold secrets
    re.compile(
        r"(?i)((?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|"
        r"client[_-]?secret|auth)[\w-]*[\"']?\s*[:=]\s*[\"']?)([^\s\"',;&]+)"
    ),
    re.compile(r"()(\b(?:xox[abposr]|xapp)-[A-Za-z0-9-]{8,})"),  # Slack tokens
    re.compile(r"()(\bsyt_[A-Za-z0-9_]{8,})"),  # Synapse access tokens
    re.compile(r"()(\bAKIA[0-9A-Z]{16}\b)"),  # AWS access key IDs
    re.compile(r"()(-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----)"),
    re.compile(r"(://[^:/\s@]+:)([^@\s/]+)(@)"),  # user:password@ in URLs
]


def env_values(env: Iterable[str]) -> list[str]:
    """The values of ``KEY=value`` entries worth masking (very short ones would mask noise)."""
    values = []
    for item in env:
        _, sep, value = item.partition("=")
        if sep and len(value) >= 4:
            values.append(value)
    return sorted(values, key=len, reverse=True)


def scrub(text: str, values: Iterable[str] = ()) -> str:
    for value in values:
        text = text.replace(value, MASK)
    for pattern in _PATTERNS:
        text = pattern.sub(
            lambda m: m.group(1) + MASK + (m.group(3) if m.lastindex and m.lastindex >= 3 else ""),
            text,
        )
    return text
