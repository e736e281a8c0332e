"""Judging convergence from Engine API dicts (pure logic)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from bot.swarm.convergence import assess

pytestmark = pytest.mark.unit


def stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


def service(replicas: int = 1) -> dict:
    return {
        "ID": "s1",
        "Spec": {"Name": "demo_worker", "Mode": {"Replicated": {"Replicas": replicas}}},
    }


def task(
    state: str, created: float, slot: int = 1, desired: str = "running", index: int = 1
) -> dict:
    return {
        "ID": f"t{index}",
        "Slot": slot,
        "NodeID": "n1",
        "DesiredState": desired,
        "CreatedAt": stamp(created),
        "Version": {"Index": index},
        "Status": {"State": state, "Err": "No such container: x"},
    }


def test_a_failure_from_before_the_change_is_history_not_the_outcome() -> None:
    since = time.time()
    tasks = [
        task("failed", since - 30, desired="shutdown", index=1),
        task("starting", since + 1, index=2),
    ]
    result = assess(service(), tasks, set(), since)
    assert result.state == "converging" and "starting" in result.reason


def test_a_failure_the_change_started_fails_it_once_the_retry_fails_too() -> None:
    since = time.time()
    tasks = [
        task("failed", since + 1, desired="shutdown", index=1),
        task("ready", since + 2, index=2),
    ]
    result = assess(service(), tasks, set(), since)
    assert result.state == "converging", result
    assert "No such container" in result.reason and "starting it again" in result.reason
    tasks += [task("failed", since + 3, desired="shutdown", index=3)]
    tasks[1]["DesiredState"] = "shutdown"
    result = assess(service(), tasks, set(), since)
    assert result.state == "failed" and "No such container" in result.reason


def test_a_task_that_failed_once_and_runs_again_is_converged() -> None:
    since = time.time()
    tasks = [
        task("failed", since + 1, desired="shutdown", index=1),
        task("running", since + 2, index=2),
    ]
    assert assess(service(), tasks, set(), since).state == "converged"


def test_without_restarts_the_first_failure_is_the_outcome() -> None:
    since = time.time()
    never = service()
    never["Spec"]["TaskTemplate"] = {"RestartPolicy": {"Condition": "none"}}
    tasks = [task("failed", since + 1, desired="shutdown", index=1)]
    assert assess(never, tasks, set(), since).state == "failed"


def test_running_in_every_slot_is_converged() -> None:
    since = time.time()
    tasks = [
        task("running", since + 1, slot=1, index=1),
        task("running", since + 1, slot=2, index=2),
        task("failed", since - 60, slot=2, desired="shutdown", index=3),
    ]
    assert assess(service(2), tasks, set(), since).state == "converged"
