"""Alertmanager's webhook payload (version 4), read without trusting it.

Whoever holds the receiver's credentials can send anything, so every field is checked for
type and size before it is used; a body that is not a version-4 group is refused whole
(``BadPayload``, whose message is safe to log and to answer with).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

MAX_ALERTS = 500
MAX_LABELS = 64
MAX_TEXT = 2000
STATUSES = ("firing", "resolved")
_FRACTION = re.compile(r"\.(\d{6})\d+")  # Go writes nanoseconds; Python reads microseconds


class BadPayload(ValueError):
    """Not an Alertmanager version-4 payload."""


@dataclass(frozen=True)
class Alert:
    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts: float  # Unix time
    ends: float  # 0 while firing
    fingerprint: str

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "alert")

    @property
    def summary(self) -> str:
        return self.annotations.get("summary") or self.annotations.get("description", "")


@dataclass(frozen=True)
class Group:
    key: str  # Alertmanager's groupKey: the same group, delivery after delivery
    status: str
    receiver: str
    group_labels: dict[str, str]
    common_labels: dict[str, str]
    alerts: tuple[Alert, ...]
    truncated: int

    @property
    def firing(self) -> tuple[Alert, ...]:
        return tuple(a for a in self.alerts if a.status == "firing")

    @property
    def resolved(self) -> tuple[Alert, ...]:
        return tuple(a for a in self.alerts if a.status == "resolved")

    @property
    def since(self) -> float:
        """When the earliest alert of the group started firing."""
        return min((a.starts for a in self.alerts if a.starts), default=0.0)


def parse(body: bytes) -> Group:
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadPayload("not JSON") from None
    if not isinstance(raw, dict):
        raise BadPayload("not a JSON object")
    if str(raw.get("version")) != "4":
        raise BadPayload("not an Alertmanager webhook (version 4)")
    alerts = raw.get("alerts")
    if not isinstance(alerts, list) or not alerts:
        raise BadPayload("no alerts")
    if len(alerts) > MAX_ALERTS:
        raise BadPayload(f"more than {MAX_ALERTS} alerts (set max_alerts in Alertmanager)")
    truncated = raw.get("truncatedAlerts", 0)
    return Group(
        key=_text(raw.get("groupKey"), "groupKey", required=True),
        status=_status(raw.get("status")),
        receiver=_text(raw.get("receiver"), "receiver"),
        group_labels=_labels(raw.get("groupLabels"), "groupLabels"),
        common_labels=_labels(raw.get("commonLabels"), "commonLabels"),
        alerts=tuple(_alert(a) for a in alerts),
        truncated=truncated if isinstance(truncated, int) and truncated >= 0 else 0,
    )


def _alert(raw: Any) -> Alert:
    if not isinstance(raw, dict):
        raise BadPayload("an alert is not an object")
    status = _status(raw.get("status"))
    return Alert(
        status=status,
        labels=_labels(raw.get("labels"), "labels"),
        annotations=_labels(raw.get("annotations"), "annotations"),
        starts=unix_time(raw.get("startsAt")),
        ends=unix_time(raw.get("endsAt")) if status == "resolved" else 0.0,
        fingerprint=_text(raw.get("fingerprint"), "fingerprint")
        or json.dumps(raw.get("labels"), sort_keys=True)[:200],
    )


def _status(value: Any) -> str:
    if value not in STATUSES:
        raise BadPayload("status must be firing or resolved")
    return str(value)


def _text(value: Any, what: str, required: bool = False) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise BadPayload(f"{what} must be text")
    if len(value) > MAX_TEXT:
        raise BadPayload(f"{what} is longer than {MAX_TEXT} characters")
    return value


def _labels(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_LABELS:
        raise BadPayload(f"{what} must be an object of at most {MAX_LABELS} texts")
    out = {}
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str) or len(key) > 200:
            raise BadPayload(f"{what} must map names to texts")
        out[key] = item[:MAX_TEXT]
    return out


def unix_time(value: Any) -> float:
    """RFC 3339 as Alertmanager writes it; its zero time (0001-01-01) reads as 0."""
    if not isinstance(value, str) or not value or value.startswith("0001-"):
        return 0.0
    text = _FRACTION.sub(r".\1", value.replace("Z", "+00:00"))
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        raise BadPayload(f"{value[:40]!r} is not a time") from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()
