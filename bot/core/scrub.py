"""Scrub secrets from everything that leaves a process: replies, notices, logs, audit.

Two layers: exact values known to be secret (the config's ``[variables]``, the signing
secret, chat tokens, a service's own environment), masked wherever they appear, including
inside longer strings and in their base64 and URL-encoded forms; and patterns that look
like credentials wherever they appear.

The process-wide masker is installed once at start-up by the composition root
(``install``): the set of secrets a process holds does not change while it runs, and every
output path (the result writer, the log formatters, the audit writer) must see the same
set without each call site passing it.
"""

from __future__ import annotations

import base64
import re
import urllib.parse
from collections.abc import Iterable
from typing import Any

MASK = "***"
MIN_SECRET_LENGTH = 4  # shorter values ("1", "yes") would mask noise, not secrets
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
        if sep and len(value) >= MIN_SECRET_LENGTH:
            values.append(value)
    return sorted(values, key=len, reverse=True)


def encoded_forms(value: str) -> set[str]:
    """``value`` as it may show up in output: itself, URL-encoded, and base64 (standard and
    URL-safe alphabets) at each of the three byte alignments it can have inside a longer
    base64 text. Only the part of each encoding that does not depend on the neighbouring
    bytes is kept, so the value is found wherever it sits in an encoded blob."""
    forms = {value, urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value)}
    raw = value.encode("utf-8", "replace")
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode()
        # Characters touched by the padding bytes before, or by what follows, vary.
        start = (offset * 8 + 5) // 6 if offset else 0
        end = (len(encoded) - encoded.count("=")) - (1 if (offset + len(raw)) % 3 else 0)
        stable = encoded[start:end]
        if len(stable) >= max(MIN_SECRET_LENGTH, 6):
            forms.add(stable)
            forms.add(stable.replace("+", "-").replace("/", "_"))
    return {f for f in forms if len(f) >= MIN_SECRET_LENGTH}


class Masker:
    """Masks a fixed set of secret values (and their encoded forms) and credential patterns."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        forms: set[str] = set()
        for value in values:
            if value and len(value) >= MIN_SECRET_LENGTH:
                forms |= encoded_forms(value)
        # Longest first: a secret that contains another is masked whole.
        self.forms = sorted(forms, key=len, reverse=True)

    def with_values(self, values: Iterable[str]) -> Masker:
        """This masker plus ``values`` (a service's environment, for its logs)."""
        extra = Masker(values)
        combined = Masker()
        combined.forms = sorted(set(self.forms) | set(extra.forms), key=len, reverse=True)
        return combined

    def text(self, text: str) -> str:
        return scrub(text, self.forms)

    def data(self, value: Any) -> Any:
        """Every string inside a JSON-like value, masked (keys too: they can echo input)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.data(k): self.data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.data(v) for v in value)
        return value


_installed = Masker()


def install(values: Iterable[str]) -> Masker:
    """Set the process-wide masker (the composition root calls this once at start-up)."""
    global _installed
    _installed = Masker(values)
    return _installed


def masker() -> Masker:
    """The process-wide masker: what every output path masks."""
    return _installed


def scrub(text: str, values: Iterable[str] = ()) -> str:
    for value in values:
        text = text.replace(value, MASK)
    for pattern in _PATTERNS:
        text = pattern.sub(
            lambda m: m.group(1) + MASK + (m.group(3) if m.lastindex and m.lastindex >= 3 else ""),
            text,
        )
    return text
