"""Label matchers in Alertmanager's own syntax, so an operator writes the same thing in
``[[alerts.route]]``, in ``!silence`` and in amtool: ``severity="critical"``,
``stack=~"dev|ci"``, ``alertname!=Watchdog``, comma-separated, optionally in braces.

Regular expressions are anchored, as in Alertmanager (``stack=~"dev"`` does not match
``devtools``). Written here rather than taken from a library: no maintained Python package
parses Alertmanager's matchers, and the grammar is one regular expression.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

MAX_MATCHERS = 20
MAX_VALUE = 200
_ONE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]{0,99})\s*(=~|!~|!=|=)\s*(.*?)\s*$")


class BadMatchers(ValueError):
    """Matchers that cannot be read; the message says which and why, safe for chat."""


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str  # "=", "!=", "=~", "!~"
    value: str

    @property
    def is_regex(self) -> bool:
        return self.op in ("=~", "!~")

    @property
    def is_equal(self) -> bool:
        return self.op in ("=", "=~")

    def matches(self, labels: Mapping[str, str]) -> bool:
        """A missing label reads as "", as in Alertmanager."""
        value = labels.get(self.name, "")
        hit = re.fullmatch(self.value, value) is not None if self.is_regex else value == self.value
        return hit if self.is_equal else not hit

    def api(self) -> dict[str, object]:
        """The matcher as Alertmanager's API v2 takes it in a silence."""
        return {
            "name": self.name,
            "value": self.value,
            "isRegex": self.is_regex,
            "isEqual": self.is_equal,
        }

    def __str__(self) -> str:
        return f"{self.name}{self.op}{json.dumps(self.value)}"


def parse(text: str) -> tuple[Matcher, ...]:
    """``a="b",c=~"d|e"`` (or in braces) into matchers; BadMatchers says what is wrong."""
    body = text.strip()
    if body.startswith("{") and body.endswith("}"):
        body = body[1:-1]
    parts = [p for p in _split(body) if p.strip()]
    if not parts:
        raise BadMatchers('no matchers (write them as name="value", comma-separated)')
    if len(parts) > MAX_MATCHERS:
        raise BadMatchers(f"at most {MAX_MATCHERS} matchers")
    return tuple(_one(part) for part in parts)


def matches_all(matchers: tuple[Matcher, ...], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


def _one(part: str) -> Matcher:
    found = _ONE.match(part)
    if found is None:
        raise BadMatchers(f'{part.strip()[:60]!r} is not a matcher like name="value"')
    name, op, raw = found.groups()
    value = _unquote(raw)
    if len(value) > MAX_VALUE:
        raise BadMatchers(f"the value for {name} is longer than {MAX_VALUE} characters")
    if op in ("=~", "!~"):
        try:
            re.compile(value)
        except re.error as exc:
            raise BadMatchers(f"the regular expression for {name} is not valid: {exc}") from None
    return Matcher(name, op, value)


def _unquote(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        try:
            value = json.loads(raw)
        except ValueError:
            raise BadMatchers(f"{raw[:60]} is not a quoted value") from None
        return str(value)
    if '"' in raw:
        raise BadMatchers(f"{raw[:60]} has a stray quote")
    return raw


def _split(body: str) -> list[str]:
    """Split at commas outside double quotes."""
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for ch in body:
        if escaped:
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    if quoted:
        raise BadMatchers("a quote is not closed")
    parts.append("".join(current))
    return parts
