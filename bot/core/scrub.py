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
import json
import re
import urllib.parse
from collections.abc import Iterable
from typing import Any

MASK = "***"
MIN_SECRET_LENGTH = 4  # shorter values ("1", "yes") would mask noise, not secrets
# Each pattern with the words (lower case) it cannot match without: a text holding none of
# them is not searched by it. Python's regex engine scans a long text slowly, and most text
# (a 500-service listing, a log line) holds no credential at all.
_PATTERNS: list[tuple[tuple[str, ...], re.Pattern[str]]] = [
    # first, so "Authorization: Bearer x" masks the token, not the word Bearer
    (("bearer",), re.compile(r"(?i)(bearer\s+)([A-Za-z0-9._~+/=-]{8,})")),
    (("basic",), re.compile(r"(?i)(basic\s+)([A-Za-z0-9+/=]{8,})")),
    # key=value / key: value / "key": "value" for names that usually hold secrets
    (
        ("passw", "pwd", "secret", "token", "key", "auth"),
        re.compile(
            r"(?i)((?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|"
            r"private[_-]?key|client[_-]?secret|auth)[\w-]*[\"']?\s*[:=]\s*[\"']?)"
            r"([^\s\"',;&]+)"
        ),
    ),
    (("xox", "xapp"), re.compile(r"()(\b(?:xox[abposr]|xapp)-[A-Za-z0-9-]{8,})")),  # Slack
    (("syt_",), re.compile(r"()(\bsyt_[A-Za-z0-9_]{8,})")),  # Synapse access tokens
    (("akia",), re.compile(r"()(\bAKIA[0-9A-Z]{16}\b)")),  # AWS access key IDs
    (
        ("-----begin",),
        re.compile(
            r"()(-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----)"
        ),
    ),
    (("://",), re.compile(r"(://[^:/\s@]+:)([^@\s/]+)(@)")),  # user:password@ in URLs
]


def _patterns_for(text: str) -> list[re.Pattern[str]]:
    """The credential patterns that could match somewhere in ``text``."""
    low = text.lower()
    return [pattern for hints, pattern in _PATTERNS if any(h in low for h in hints)]


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
        """Every string inside a JSON-like value, masked (keys too: they can echo input).

        A whole result is searched once, as JSON text, before any string is rewritten: a
        500-service listing has thousands of strings and usually no secret, and walking it
        string by string costs more than the listing itself."""
        if not self._may_hold_secrets(value):
            return value
        return self._walk(value)

    def _walk(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self._walk(k): self._walk(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self._walk(v) for v in value)
        return value

    def _may_hold_secrets(self, value: Any) -> bool:
        """False only when no string in ``value`` can need masking. JSON escapes only
        quotes, backslashes and control characters, which leave every credential pattern
        able to match; a secret that holds such a character is not searched this way."""
        return self.may_be_in_json(json.dumps(value, ensure_ascii=False, default=str))

    def may_be_in_json(self, text: str) -> bool:
        """Could a string of the JSON document ``text`` (written with ``ensure_ascii=False``)
        need masking? A caller that serialises anyway asks this of its own text, and masks
        and serialises again only when the answer is yes (rarely)."""
        if any(_JSON_ESCAPED.search(form) for form in self.forms):
            return True
        return any(form in text for form in self.forms) or any(
            pattern.search(text) for pattern in _patterns_for(text)
        )


_JSON_ESCAPED = re.compile(r'["\\\x00-\x1f]')


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
    for pattern in _patterns_for(text):
        text = pattern.sub(
            lambda m: m.group(1) + MASK + (m.group(3) if m.lastindex and m.lastindex >= 3 else ""),
            text,
        )
    return text
