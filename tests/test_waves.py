"""The wave scheduler behind ``!deploy all``: real threads, real waiting on each other."""

from __future__ import annotations

import threading

import pytest

from bot.core import waves


def test_independent_steps_run_together_and_dependents_wait() -> None:
    # a and b can only both finish if they run at the same time (each waits for the other
    # to have started); c must not start before both are done.
    started = {"a": threading.Event(), "b": threading.Event()}
    finished: list[str] = []

    def step(name: str) -> bool:
        if name in started:
            started[name].set()
            other = started["b" if name == "a" else "a"]
            assert other.wait(10), f"{name} ran alone"
        else:
            assert {"a", "b"} <= set(finished), finished
        finished.append(name)
        return True

    results, skipped = waves.run({"a": set(), "b": set(), "c": {"a", "b"}}, step, bool)
    assert results == {"a": True, "b": True, "c": True} and skipped == {}
    assert finished[-1] == "c"


def test_a_failure_stops_only_what_needs_it_directly_or_not() -> None:
    ran: list[str] = []

    def step(name: str) -> bool:
        ran.append(name)
        return name != "ci"

    needs = {"ingress": set(), "ci": {"ingress"}, "dev": {"ci"}, "docs": {"dev"}, "cdn": set()}
    results, skipped = waves.run(needs, step, bool)
    assert sorted(ran) == ["cdn", "ci", "ingress"]
    assert results["ci"] is False
    assert skipped == {
        "dev": "needs ci, which failed",
        "docs": "needs dev, which was not deployed",
    }


def test_an_exception_is_raised_after_running_steps_return_and_nothing_new_starts() -> None:
    ran: list[str] = []

    def step(name: str) -> bool:
        ran.append(name)
        if name == "a":
            raise RuntimeError("handed over")
        return True

    with pytest.raises(RuntimeError, match="handed over"):
        waves.run({"a": set(), "b": {"a"}}, step, bool)
    assert ran == ["a"]


def test_steps_that_need_each_other_are_refused_before_any_runs() -> None:
    with pytest.raises(waves.CycleError, match="need each other: x, y"):
        waves.run({"x": {"y"}, "y": {"x"}, "z": set()}, lambda n: True, bool)
