"""What the notice watcher tells, decided without Docker or Redis: tables of before and
after (``bot.swarm.notices.decide``). The threads that read the swarm for these functions
are tested against the real swarm in tests/test_notices.py and tests/test_nodes.py."""

from __future__ import annotations

from typing import Any

import pytest

from bot.swarm.notices import decide
from bot.swarm.notices.decide import Pending

pytestmark = pytest.mark.unit

NOW = 1_000_000.0


def svc(name: str = "dev_web", **over: Any) -> dict[str, Any]:
    base = {
        "name": name,
        "stack": name.split("_")[0] if "_" in name else "",
        "spec": "s1",
        "image": "web:1",
        "replicas": 1,
        "update": "",
        "update_started": 0.0,
        "update_message": "",
        "healthy": True,
        "commit": "",
    }
    return {**base, **over}


def run(
    seen: dict[str, Any],
    current: dict[str, Any],
    pending: dict[str, Pending] | None = None,
    claimed: tuple[str, ...] = (),
    expected: dict[str, str] | None = None,
    from_git: bool = False,
) -> tuple[decide.Decision, dict[str, Pending]]:
    held = pending if pending is not None else {}
    decision = decide.services(
        seen,
        current,
        held,
        claimed=set(claimed),
        expected=expected or {},
        from_git=from_git,
        now=NOW,
    )
    return decision, held


def texts(decision: decide.Decision) -> list[str]:
    return [t.text for t in decision.told]


# (case, seen, current, what is told at once, what is held for the quiet period)
SERVICE_CASES = [
    ("first look only learns", {}, {"a": svc(spec="s2")}, [], {}),
    ("nothing changed", {"a": svc()}, {"a": svc()}, [], {}),
    (
        "image changed by hand",
        {"a": svc()},
        {"a": svc(spec="s2", image="web:2")},
        [],
        {"dev": {"dev_web": "image web:1 -> web:2"}},
    ),
    (
        "scaled by hand",
        {"a": svc()},
        {"a": svc(spec="s2", replicas=3)},
        [],
        {"dev": {"dev_web": "replicas 1 -> 3"}},
    ),
    (
        "created by hand",
        {"a": svc()},
        {"a": svc(), "b": svc("dev_db", image="pg:16")},
        [],
        {"dev": {"dev_db": "created (pg:16)"}},
    ),
    (
        "a service outside any stack is held under its own name",
        {"a": svc("lonely")},
        {"a": svc("lonely", spec="s2")},
        [],
        {"lonely": {"lonely": "settings changed"}},
    ),
    ("removed by hand", {"a": svc()}, {}, ["dev_web was removed outside the bot"], {}),
    (
        "swarm rolled an update back",
        {"a": svc()},
        {"a": svc(update="rollback_completed", update_message="task failed")},
        ["dev_web: swarm rollback completed: task failed"],
        {},
    ),
    (
        "a failed update without a reason says so",
        {"a": svc()},
        {"a": svc(update="paused")},
        ["dev_web: swarm paused: no reason given"],
        {},
    ),
    (
        "a service that lost its tasks",
        {"a": svc()},
        {"a": svc(healthy=False, failing="task exited (1)")},
        ["dev_web is unhealthy: task exited (1)"],
        {},
    ),
    (
        "losing tasks mid-update is the update's story",
        {"a": svc()},
        {"a": svc(healthy=False, update="updating")},
        [],
        {},
    ),
    (
        "still unhealthy is not told again",
        {"a": svc(healthy=False)},
        {"a": svc(healthy=False)},
        [],
        {},
    ),
]


@pytest.mark.parametrize(
    ("seen", "current", "said", "held"),
    [c[1:] for c in SERVICE_CASES],
    ids=[c[0] for c in SERVICE_CASES],
)
def test_service_changes(
    seen: dict[str, Any], current: dict[str, Any], said: list[str], held: dict[str, Any]
) -> None:
    decision, pending = run(seen, current)
    assert texts(decision) == said
    assert {k: p.changes for k, p in pending.items()} == held


def test_a_look_at_named_services_is_not_a_first_look_though_it_saw_none_before() -> None:
    """A look at the services events named (not the whole swarm) may have seen none of
    them: a service created by hand is told, and one short of tasks is asked about."""
    created = {"b": svc("dev_db", image="pg:16", healthy=False)}
    held: dict[str, Pending] = {}
    decision = decide.services(
        {}, created, held, claimed=set(), expected={}, from_git=False, now=NOW, first=False
    )
    assert [t.text for t in decision.begun] == [
        "dev: being changed outside the bot (dev_db first)…"
    ]
    assert {k: p.changes for k, p in held.items()} == {"dev": {"dev_db": "created (pg:16)"}}
    assert decide.newly_unhealthy({}, created, first=False) == ["b"]
    assert decide.newly_unhealthy({}, created) == []  # nothing seen, no flag: the first look


@pytest.mark.parametrize(
    "claimed", [("dev",), ("dev_web",)], ids=["its stack claimed", "the service claimed"]
)
def test_a_claimed_service_is_left_to_its_job(claimed: tuple[str, ...]) -> None:
    changed, _ = run({"a": svc()}, {"a": svc(spec="s2", image="web:2")}, claimed=claimed)
    removed, _ = run({"a": svc()}, {}, claimed=claimed)
    assert texts(changed) == []
    assert texts(removed) == []


def test_a_state_a_job_said_it_made_is_taken_in_silently_once() -> None:
    decision, pending = run(
        {"a": svc(), "b": svc("dev_db")},
        {"a": svc(spec="s2")},
        expected={"a": "s2", "b": "removed"},
    )
    assert texts(decision) == []
    assert pending == {}
    assert decision.consumed == {"a", "b"}


def test_a_stack_from_git_is_told_as_drift_not_as_an_outside_change() -> None:
    current = {"a": svc(spec="s2", commit="abc")}
    from_git, pending = run({"a": svc(commit="abc")}, current, from_git=True)
    without_git, held = run({"a": svc(commit="abc")}, current, from_git=False)
    assert from_git.drifted
    assert pending == {}
    assert not without_git.drifted
    assert "dev" in held


def test_a_failed_update_of_a_held_change_is_told_with_it() -> None:
    pending = {"dev": Pending("dev", {"dev_web": "image web:1 -> web:2"}, NOW - 5, NOW - 5)}
    seen = {"a": svc(spec="s2", image="web:2", update="updating")}
    current = {
        "a": svc(spec="s2", image="web:2", update="rollback_completed", update_message="bad")
    }
    decision, held = run(seen, current, pending)
    assert texts(decision) == []
    assert held["dev"].outcome == {"dev_web": "rollback completed: bad"}


# (case, held change's quiet_since, service state now, told?)
FINISH_CASES = [
    ("quiet long enough and done", NOW - 10, svc(spec="s2"), True),
    ("still within the quiet period", NOW - 1, svc(spec="s2"), False),
    ("swarm still updating", NOW - 10, svc(spec="s2", update="updating"), False),
    ("swarm rolling back", NOW - 10, svc(spec="s2", update="rollback_started"), False),
]


@pytest.mark.parametrize(
    ("quiet_since", "state", "told"),
    [c[1:] for c in FINISH_CASES],
    ids=[c[0] for c in FINISH_CASES],
)
def test_a_held_change_is_told_when_swarm_is_done_and_quiet(
    quiet_since: float, state: dict[str, Any], told: bool
) -> None:
    pending = {"dev": Pending("dev", {"dev_web": "replicas 1 -> 3"}, NOW - 20, quiet_since)}
    out = decide.finished({"a": state}, pending, NOW, quiet=3.0)
    assert bool(out) is told
    assert ("dev" in pending) is not told


def test_a_finished_change_says_each_service_its_outcome_and_fails_as_a_whole() -> None:
    pending = {
        "dev": Pending(
            "dev",
            {"dev_web": "image web:1 -> web:2", "dev_db": "replicas 1 -> 2"},
            NOW - 20,
            NOW - 9,
        )
    }
    current = {
        "a": svc(update="rollback_completed", update_started=NOW - 19, update_message="crash"),
        "b": svc("dev_db"),
    }
    [told] = decide.finished(current, pending, NOW, quiet=3.0)
    assert told.text == "dev: changed outside the bot (2 services, 20s): FAILED"
    assert told.lines == (
        "dev_web: image web:1 -> web:2 (rollback completed: crash)",
        "dev_db: replicas 1 -> 2 (done)",
    )
    assert told.status == "failed"


def test_an_older_failed_update_is_not_this_changes_outcome() -> None:
    pending = {"dev": Pending("dev", {"dev_web": "settings changed"}, NOW - 20, NOW - 9)}
    current = {"a": svc(update="rollback_completed", update_started=NOW - 500)}
    [told] = decide.finished(current, pending, NOW, quiet=3.0)
    assert told.status == "info"
    assert told.lines == ("dev_web: settings changed (done)",)


def node(host: str, status: str = "ready", availability: str = "active") -> dict[str, str]:
    return {"host": host, "status": status, "availability": availability}


# (case, seen, now, expected markers, told, nodes that went down)
NODE_CASES = [
    ("first look only learns", None, {"n1": node("w1")}, {}, [], []),
    ("joined", {}, {"n1": node("w1")}, {}, ["node w1 joined the swarm (ready)"], []),
    ("left", {"n1": node("w1")}, {}, {}, ["node w1 left the swarm"], []),
    (
        "went down",
        {"n1": node("w1")},
        {"n1": node("w1", "down")},
        {},
        ["node w1 is down: swarm moves its tasks to other nodes"],
        ["n1"],
    ),
    (
        "came back",
        {"n1": node("w1", "down")},
        {"n1": node("w1")},
        {},
        ["node w1 is back (ready)"],
        [],
    ),
    (
        "drained by hand",
        {"n1": node("w1")},
        {"n1": node("w1", availability="drain")},
        {},
        ["node w1 drained outside the bot"],
        [],
    ),
    (
        "activated by hand",
        {"n1": node("w1", availability="pause")},
        {"n1": node("w1")},
        {},
        ["node w1 activated outside the bot"],
        [],
    ),
    (
        "drained by a job, which tells it",
        {"n1": node("w1")},
        {"n1": node("w1", availability="drain")},
        {"n1": "drain"},
        [],
        [],
    ),
]


@pytest.mark.parametrize(
    ("seen", "now_nodes", "expected", "said", "down"),
    [c[1:] for c in NODE_CASES],
    ids=[c[0] for c in NODE_CASES],
)
def test_node_changes(
    seen: dict[str, Any] | None,
    now_nodes: dict[str, Any],
    expected: dict[str, str],
    said: list[str],
    down: list[str],
) -> None:
    decision = decide.nodes(seen, now_nodes, expected, NOW)
    assert [t.text for t in decision.told] == said
    assert decision.down == down


def test_a_node_marker_is_consumed_when_its_change_is_seen() -> None:
    decision = decide.nodes(
        {"n1": node("w1")}, {"n1": node("w1", availability="drain")}, {"n1": "drain"}, NOW
    )
    assert decision.consumed == {"n1"}


def test_one_wording_for_availability_in_answers_and_notices() -> None:
    from bot.core.availability import change_word, state_word

    assert [state_word(a) for a in ("active", "pause", "drain")] == ["active", "paused", "drained"]
    assert [change_word(a) for a in ("active", "pause", "drain")] == [
        "activated",
        "paused",
        "drained",
    ]


def test_a_hand_change_back_to_the_state_a_job_left_is_told() -> None:
    """The probe: !scale to 2 (watched while the job held its claim), then by hand 2 -> 3
    and back 3 -> 2. The job's expectation must not swallow the hand change back."""
    at_two = svc(spec="s2", replicas=2)
    after_job, _ = run({"a": at_two}, {"a": at_two}, expected={"a": "s2"})
    assert after_job.consumed == {"a"}  # the first look after the job ends its expectation
    _, up = run({"a": at_two}, {"a": svc(spec="s3", replicas=3)})
    _, back = run({"a": svc(spec="s3", replicas=3)}, {"a": at_two})  # nothing expected now
    assert up["dev"].changes == {"dev_web": "replicas 2 -> 3"}
    assert back["dev"].changes == {"dev_web": "replicas 3 -> 2"}


def test_an_expectation_that_does_not_match_is_dropped_and_the_change_told() -> None:
    decision, pending = run({"a": svc()}, {"a": svc(spec="s9", replicas=9)}, expected={"a": "s2"})
    assert decision.consumed == {"a"}
    assert pending["dev"].changes == {"dev_web": "replicas 1 -> 9"}
