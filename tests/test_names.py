"""How typed service names resolve (pure logic, no swarm needed)."""

import pytest

from bot.core.ids import resolve_service

pytestmark = pytest.mark.unit

NAMES = ["dev_gerrit", "dev_trac", "ci_gerrit-db", "support_postgres", "ci_trac", "loner"]


def test_short_name_finds_the_stack_service() -> None:
    assert resolve_service("gerrit", NAMES).match == "dev_gerrit"
    assert resolve_service("postgres", NAMES).match == "support_postgres"


def test_exact_name_wins() -> None:
    assert resolve_service("ci_trac", NAMES).match == "ci_trac"
    assert resolve_service("loner", NAMES).match == "loner"


def test_same_service_in_two_stacks_is_ambiguous_never_a_guess() -> None:
    found = resolve_service("trac", NAMES)
    assert found.match is None and found.ambiguous
    assert found.candidates == ("ci_trac", "dev_trac")


def test_unknown_name_suggests_close_spellings() -> None:
    found = resolve_service("gerit", NAMES)
    assert found.match is None and not found.ambiguous
    assert "dev_gerrit" in found.candidates


def test_nothing_close_suggests_nothing() -> None:
    assert resolve_service("zzzz", NAMES).candidates == ()
