"""How one alert group reads in chat: one message, its head saying what fires (or that it
resolved, and after how long), one line per alert, and the last change to what it is about.
"""

from __future__ import annotations

import time

from bot.core.alerting.payload import Alert, Group
from bot.core.alerting.story import Story
from bot.core.alerting.ties import ago

MAX_LINES = 20


def head(group: Group, story: Story, now: float) -> str:
    """``FIRING: HighLatency on dev_gerrit (2 alerts) since 04:31 UTC (3 min)``."""
    title = _title(group)
    if group.status == "resolved":
        text = f"RESOLVED: {title}, after {ago(now - (story.first or group.since or now))}"
    else:
        count = len(group.firing)
        since = story.first or group.since or now
        text = (
            f"FIRING: {title}"
            + (f" ({count} alerts)" if count > 1 else "")
            + f" since {_clock(since)} ({ago(now - since)})"
        )
    if story.fired > 1:
        text += f"; fired {story.fired} times since {_clock(story.first)}"
    return text


def lines(group: Group, tie: str = "") -> tuple[str, ...]:
    """One line per alert (firing first), then the last change, if the labels name one."""
    ordered = sorted(group.alerts, key=lambda a: (a.status != "firing", a.starts))
    out = [_line(a) for a in ordered[:MAX_LINES]]
    more = len(ordered) - MAX_LINES + group.truncated
    if more > 0:
        out.append(f"… and {more} more")
    if tie:
        out.append(tie)
    return tuple(out)


def _title(group: Group) -> str:
    labels = group.common_labels or group.group_labels
    name = labels.get("alertname") or ", ".join(sorted({a.name for a in group.alerts})[:3])
    where = next(
        (
            labels[k]
            for k in (
                "container_label_com_docker_swarm_service_name",
                "service",
                "stack",
                "instance",
                "job",
            )
            if labels.get(k)
        ),
        "",
    )
    return f"{name} on {where}" if where else name


def _line(alert: Alert) -> str:
    state = "firing" if alert.status == "firing" else "resolved"
    where = alert.labels.get("container_label_com_docker_swarm_service_name") or alert.labels.get(
        "service", alert.labels.get("instance", "")
    )
    text = f"{state}: {alert.name}" + (f" ({where})" if where else "")
    if alert.summary:
        text += f": {alert.summary[:300]}"
    if alert.starts:
        text += f" — since {_clock(alert.starts)}"
    return text


def _clock(at: float) -> str:
    return time.strftime("%H:%M UTC", time.gmtime(at))
