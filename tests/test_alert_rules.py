"""The alert receiver's pure parts, by tables: Alertmanager's matchers, the webhook payload
read without trust, and one group's story across deliveries (new message, edit, flapping)."""

from __future__ import annotations

import json

import pytest

from bot.core.alerting import story as stories
from bot.core.alerting.matchers import BadMatchers, matches_all, parse
from bot.core.alerting.payload import BadPayload
from bot.core.alerting.payload import parse as parse_payload
from bot.core.alerting.ties import LastChange, subjects, tie_line


@pytest.mark.parametrize(
    ("text", "labels", "hit"),
    [
        ('severity="critical"', {"severity": "critical"}, True),
        ('severity="critical"', {"severity": "warning"}, False),
        ('stack=~"dev|ci"', {"stack": "ci"}, True),
        ('stack=~"dev|ci"', {"stack": "devtools"}, False),  # anchored, as in Alertmanager
        ("alertname!=Watchdog", {"alertname": "Disk"}, True),
        ('{alertname="Disk",stack!~"prod.*"}', {"alertname": "Disk", "stack": "prod1"}, False),
        ('team=""', {}, True),  # a missing label reads as ""
        ('summary="a, b"', {"summary": "a, b"}, True),  # a comma inside quotes
    ],
)
def test_matchers_match_as_alertmanager_does(text: str, labels: dict[str, str], hit: bool) -> None:
    assert matches_all(parse(text), labels) is hit


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("", "no matchers"),
        ("severity", "is not a matcher"),
        ('stack=~"(dev"', "not valid"),
        ('a="b', "not closed"),
        ("9x=1", "is not a matcher"),
    ],
)
def test_bad_matchers_say_what_is_wrong(text: str, said: str) -> None:
    with pytest.raises(BadMatchers, match=said):
        parse(text)


def _payload(**over: object) -> bytes:
    body: dict[str, object] = {
        "version": "4",
        "groupKey": '{}:{alertname="Disk"}',
        "status": "firing",
        "receiver": "swarmbot",
        "groupLabels": {"alertname": "Disk"},
        "commonLabels": {"alertname": "Disk", "service": "dev_gerrit"},
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "Disk", "service": "dev_gerrit"},
                "annotations": {"summary": "disk 95% full"},
                "startsAt": "2026-12-07T04:31:00.123456789Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "fingerprint": "abc",
            }
        ],
    }
    body.update(over)
    return json.dumps(body).encode()


def test_a_version_4_payload_is_read() -> None:
    group = parse_payload(_payload())
    assert group.status == "firing" and group.firing[0].summary == "disk 95% full"
    assert group.since == pytest.approx(1796617860.123456)  # nanoseconds read


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        _payload(version="3"),
        _payload(alerts=[]),
        _payload(status="exploded"),
        _payload(groupKey=7),
        _payload(alerts=[{"status": "firing", "labels": {"a": 1}}]),
        _payload(alerts=[{"status": "firing", "labels": {}, "startsAt": "yesterday"}]),
        _payload(alerts=[{"status": "firing"}] * 501),
    ],
)
def test_anything_else_is_refused_whole(body: bytes) -> None:
    with pytest.raises(BadPayload):
        parse_payload(body)


def _group(status: str, fingerprints: tuple[str, ...] = ("a",)) -> object:
    alerts = [
        {
            "status": status,
            "labels": {"alertname": "Disk", "n": f},
            "startsAt": "2026-12-07T04:00:00Z",
            "fingerprint": f,
        }
        for f in fingerprints
    ]
    return parse_payload(_payload(status=status, alerts=alerts))


T0 = 1796616000.0  # 2026-12-07T04:00:00Z


def test_a_group_is_one_message_until_it_has_been_resolved_longer_than_flap_seconds() -> None:
    step = stories.advance(stories.Story(), _group("firing"), T0, 3600)
    assert step.new_message and step.story.gen == 1 and step.thread == ()
    step = stories.advance(step.story, _group("firing", ("a", "b")), T0 + 60, 3600)
    assert not step.new_message and step.thread == ("joined: Disk",)
    step = stories.advance(step.story, _group("resolved", ("a", "b")), T0 + 720, 3600)
    assert not step.new_message and "resolved after 12 min" in step.thread
    # Fires again ten minutes later: flapping, the same message, counted.
    step = stories.advance(step.story, _group("firing"), T0 + 1320, 3600)
    assert not step.new_message and step.story.fired == 2 and step.story.gen == 1
    assert step.thread[0].startswith("firing again, 10 min after it resolved")
    step = stories.advance(step.story, _group("resolved"), T0 + 1400, 3600)
    # Two hours later: a new story, a new message.
    step = stories.advance(step.story, _group("firing"), T0 + 1400 + 7200, 3600)
    assert step.new_message and step.story.gen == 2 and step.story.fired == 1


def test_a_stored_story_that_is_malformed_starts_afresh() -> None:
    assert stories.Story.from_dict({"gen": "x"}) == stories.Story()
    story = stories.Story(gen=3, fired=1, first=T0, status="firing", alerts={"a": "firing"})
    assert stories.Story.from_dict(json.loads(json.dumps(story.as_dict()))) == story


def test_the_tie_names_the_service_the_change_and_its_undo() -> None:
    change = LastChange(
        "dev",
        T0 - 240,
        "12",
        "@alice:example.org",
        "!deploy dev",
        '7fb7ec9 "Raise the heap"',
        "!rollback dev",
        services=("dev_gerrit",),
    )
    about = subjects([{"container_label_com_docker_swarm_service_name": "dev_gerrit"}])
    assert about.stacks == ("dev",)
    assert tie_line(change, about, T0, T0) == (
        "dev_gerrit changed 4 min before this fired: !deploy dev by @alice:example.org at "
        '7fb7ec9 "Raise the heap" — !rollback dev'
    )
    other = subjects([{"service": "dev_trac"}])
    assert tie_line(change, other, T0, T0).startswith("stack dev changed 4 min before")
    assert LastChange.from_dict({"stack": "dev", "at": "soon"}) is None
