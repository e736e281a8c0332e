"""The operator docs cover what they promise: every command has an example conversation."""

from __future__ import annotations

import re

import pytest

from commands import REGISTRY
from tests.harness import ROOT

pytestmark = pytest.mark.unit

OPERATING = ROOT / "docs" / "OPERATING.md"


def test_every_command_has_an_example_conversation() -> None:
    text = OPERATING.read_text(encoding="utf-8")
    section = text.split("## Commands, with example conversations", 1)[1].split("\n## ", 1)[0]
    for name in REGISTRY:
        assert re.search(rf"\*\*`!{name}\b", section), f"!{name} has no entry"
        assert re.search(rf"^> !{name}\b", section, re.M), f"!{name} has no example"


def test_docs_link_to_files_that_exist() -> None:
    for doc in (ROOT / "README.md", OPERATING):
        for target in re.findall(r"\]\(([^)#:]+)\)", doc.read_text(encoding="utf-8")):
            assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"


def test_the_readme_names_every_command_answered_without_a_mark() -> None:
    """The commands the bot answers itself (no job, so no ✅) are the ones the README says."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    said = text.split("What the bot answers itself, without a job (", 1)[1].split(")", 1)[0]
    named = set(re.findall(r"`!(\w+)`", said))
    assert named == {name for name, c in REGISTRY.items() if c.answer is not None}
