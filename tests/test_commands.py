"""Every command is whole in its one file: what it needs to be parsed, allowed, queued,
validated by the worker, run, rendered, told and documented. Adding a command is adding a
file; this test says what that file must hold."""

from __future__ import annotations

import re

import pytest

from bot.core.schedule import WINDOW_ARG
from commands import REGISTRY, SCHEMAS
from commands.base import REF_ARG
from tests.harness import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
OPERATING = (ROOT / "docs" / "OPERATING.md").read_text(encoding="utf-8")

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_command_is_whole(name: str) -> None:
    command = REGISTRY[name]
    assert (command.answer is None) != (command.handler is None), "answered xor queued"
    assert command.summary and command.examples, "help text and examples"
    for example in command.examples:
        assert example.startswith(f"!{name}"), example
    assert re.search(rf"^\| `!{name}\b", README, re.M), f"README's command table lacks !{name}"
    assert re.search(rf"\*\*`!{name}\b", OPERATING), f"OPERATING.md lacks !{name}"
    if command.queued:
        assert command.render is not None, "a queued command renders its result"
        assert SCHEMAS[name] == command.schema(), "the worker validates the parsed grammar"
        names = {a.name for a in command.args}
        # An argument that takes `@<ref>` (dev@v1.2) hands the ref over under its own name;
        # a schedulable command's job may say it was made outside its window on purpose.
        assert set(SCHEMAS[name]) == names | (
            {REF_ARG} if any(a.at_ref for a in command.args) else set()
        ) | ({WINDOW_ARG} if command.schedulable else set())


def test_schemas_are_exactly_the_queued_commands() -> None:
    assert set(SCHEMAS) == {n for n, c in REGISTRY.items() if c.queued}
