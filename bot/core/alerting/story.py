"""One alert group's story across Alertmanager's deliveries: when it is a new message, when
it is the same message edited (more alerts joining, resolved, firing again soon after:
flapping), and what its thread is told. Pure: the receiver keeps ``Story`` in Redis.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from bot.core.alerting.payload import Group
from bot.core.alerting.ties import ago

MAX_REMEMBERED = 500  # alerts whose last told status a story keeps


@dataclass(frozen=True)
class Story:
    gen: int = 0  # a new message for the group each time this grows
    fired: int = 0  # times the group started firing in this message (more than 1: flapping)
    first: float = 0.0  # when the group first fired in this message
    status: str = ""  # the last status told: "firing", "resolved", "" before any
    resolved_at: float = 0.0
    alerts: dict[str, str] = field(default_factory=dict)  # fingerprint -> last told status
    places: dict[str, str] = field(default_factory=dict)  # room -> its message (story ID)

    def as_dict(self) -> dict[str, Any]:
        return {
            "gen": self.gen,
            "fired": self.fired,
            "first": self.first,
            "status": self.status,
            "resolved_at": self.resolved_at,
            "alerts": self.alerts,
            "places": self.places,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Story:
        """What a stored story says; anything malformed starts the story afresh."""
        try:
            story = cls(
                gen=int(raw["gen"]),
                fired=int(raw["fired"]),
                first=float(raw["first"]),
                status=str(raw["status"]),
                resolved_at=float(raw["resolved_at"]),
                alerts={str(k): str(v) for k, v in dict(raw["alerts"]).items()},
                places={str(k): str(v) for k, v in dict(raw["places"]).items()},
            )
        except (KeyError, TypeError, ValueError):
            return cls()
        return story


@dataclass(frozen=True)
class Step:
    story: Story
    new_message: bool  # post a new message (else edit the story's)
    thread: tuple[str, ...]  # what changed, for the message's thread


def message_id(group_key: str, gen: int) -> str:
    """The story ID a message is known by in the chat state (``alert-<hash>-<gen>``)."""
    digest = hashlib.sha256(group_key.encode()).hexdigest()[:16]
    return f"alert-{digest}-{gen}"


def advance(story: Story, group: Group, now: float, flap_seconds: float) -> Step:
    """The story after one delivery of ``group``. A group that fires again within
    ``flap_seconds`` of resolving is the same message, counted; later, a new one."""
    firing = group.status == "firing"
    thread: list[str] = []
    new_message = False
    if firing and (story.status in ("", "resolved")):
        fresh = story.status == "" or now - story.resolved_at > flap_seconds
        if fresh:
            new_message = True
            story = Story(gen=story.gen + 1, fired=1, first=group.since or now)
        else:
            story = replace(story, fired=story.fired + 1)
            thread.append(
                f"firing again, {ago(now - story.resolved_at)} after it resolved "
                f"({story.fired} times since {_clock(story.first)})"
            )
    elif story.status == "":  # a group first seen resolved (the bot was away when it fired)
        new_message = True
        story = Story(gen=story.gen + 1, fired=1, first=group.since or now)
    alerts = dict(story.alerts)
    for alert in group.alerts:
        before = alerts.get(alert.fingerprint)
        if before == alert.status:
            continue
        if alert.status == "firing" and not new_message and before is None:
            thread.append(f"joined: {_one(alert.name, alert.summary)}")
        elif alert.status == "resolved" and before == "firing":
            thread.append(f"resolved: {_one(alert.name, alert.summary)}")
        alerts[alert.fingerprint] = alert.status
    if len(alerts) > MAX_REMEMBERED:
        alerts = dict(list(alerts.items())[-MAX_REMEMBERED:])
    if not firing and story.status == "firing":
        thread.append(f"resolved after {ago(now - story.first)}")
    story = replace(
        story,
        status=group.status,
        resolved_at=now if not firing else story.resolved_at,
        alerts=alerts,
    )
    return Step(story, new_message, tuple(thread))


def _one(name: str, summary: str) -> str:
    return f"{name}: {summary}" if summary else name


def _clock(at: float) -> str:
    return time.strftime("%H:%M UTC", time.gmtime(at))
