"""The configuration reference, docs/CONFIGURATION.md, generated from config.example.toml.

The example file is the one place where each key is explained (it is what operators copy);
this turns it into a reference with each key's type and default taken from the validator's
own schema, so the two cannot disagree. ``python -m bot.core.configref`` prints it; a test fails
when the committed reference is stale.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from bot.core.config import SCHEMA

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config.example.toml"
REFERENCE = ROOT / "docs" / "CONFIGURATION.md"

_SECTION = re.compile(r"^\[(\[)?([a-z_.]+)\]\]?\s*$")
_KEY = re.compile(r"^(#\s?)?([A-Za-z_]+) = (.*?)(\s+#\s*(.*))?$")
_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", list: "list"}


def _type_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(_TYPES.get(k, k.__name__) for k in kinds)


def _default(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, str):
        return f'`"{value}"`'
    if isinstance(value, list):
        return "`[" + ", ".join(f'"{v}"' for v in value) + "]`"
    return f"`{value}`"


def _parse(
    text: str,
) -> tuple[dict[str, dict[str, str]], dict[str, str], dict[tuple[str, str], str]]:
    """Per section, each key's explanation; the prose before sections (roles, ...); and
    each key's inline note (``# xoxb-…``)."""
    keys: dict[str, dict[str, str]] = {}
    notes: dict[tuple[str, str], str] = {}
    prose: dict[str, str] = {}
    section = ""
    comment: list[str] = []
    last = ""
    for line in text.splitlines():
        stripped = line.strip()
        head = _SECTION.match(stripped)
        key = _KEY.match(stripped)
        if head:
            name = head.group(2)
            if comment:
                prose.setdefault(name.split(".")[0], " ".join(comment))
            section, comment, last = name, [], ""
            keys.setdefault(section, {})
        elif key and section:
            name = key.group(2)
            what = " ".join(comment) or last
            if key.group(5):
                notes.setdefault((section, name), key.group(5))
            if name not in keys[section] or not keys[section][name]:
                keys[section][name] = what
            last = " ".join(comment) or last
            comment = []
        elif stripped.startswith("#"):
            comment.append(stripped.lstrip("#").strip())
        elif not stripped:
            if comment and not section:
                prose["file"] = " ".join(comment)
            # Within a section, prose runs on over blank lines to the next section; a block
            # of commented-out examples ("prod*" = [...]) is no prose, and ends there.
            examples = bool(comment) and all(" = " in c for c in comment)
            comment = [] if not section or examples else comment
    return keys, prose, notes


def generate(example: str) -> str:
    keys, prose, notes = _parse(example)
    out = [
        "# Configuration reference",
        "",
        "Generated from [`config.example.toml`](../config.example.toml) by",
        "`python -m bot.core.configref > docs/CONFIGURATION.md`; types and defaults come from",
        "the validator itself (`bot/core/config/defaults.py`).",
        "`swarmbot check-config --config FILE` checks a file and names the exact key of every",
        "problem. Unknown keys are errors.",
        "",
        "Secrets (`*_file` keys, or the matching `$SWARMBOT_<SECTION>_<KEY>` and",
        "`$SWARMBOT_<SECTION>_<KEY>_FILE` environment variables) are never printed.",
        "`$SWARMBOT_REDIS_URL` overrides `redis.url`; `$SWARMBOT_CONFIG` names the file.",
        "",
    ]
    for section, schema in SCHEMA.items():
        out += [f"## `[{section}]`", ""]
        # Keys explained by one comment (a secret and its _file form) are listed together.
        groups: list[tuple[list[str], str]] = []
        for key, (kind, default) in schema.items():
            if (section, key) == ("notices", "route"):
                item = "**`[[notices.route]]`** (tables of `stacks`, `matrix`, `slack`)"
                what = prose.get("notices", "")
            else:
                note = f"; {notes[(section, key)]}" if (section, key) in notes else ""
                item = f"**`{key}`** ({_type_name(kind)}, default {_default(default)}{note})"
                what = keys.get(section, {}).get(key, "")
            if groups and groups[-1][1] == what:
                groups[-1][0].append(item)
            else:
                groups.append(([item], what))
        out += [f"- {', '.join(items)}: {what}" for items, what in groups]
        out.append("")
    variables = keys.get("variables", {})
    if variables:
        names = ", ".join(f"`{name}`" for name in variables)
        out += ["## `[variables]`", "", f"{next(iter(variables.values()))} (e.g. {names})", ""]
    if "roles" in prose:
        out += ["## `[roles.NAME]`", "", prose["roles"], ""]
        out += [
            "Each role has `users`, `commands` and `stacks` (lists), and may have `approves`",
            "(stack globs) and, with `[swarms]`, `swarms` (names). See docs/OPERATING.md.",
        ]
        out.append("")
    out += [
        "## `[swarms.NAME]`",
        "",
        "Several swarms served from the same rooms, one worker each (`swarmbot worker",
        "--swarm NAME`); without the section the bot serves one swarm and names none.",
        'Keys: `id` (the swarm\'s ID; "" remembers the first its worker finds),',
        "`docker_host` (the worker's DOCKER_HOST; \"\" keeps its environment's), `stacks_dir`",
        "(default `bot.stacks_dir`), `variables` (a table over `[variables]`), `rooms` (Matrix",
        "rooms and Slack channels whose default swarm this is; other rooms get the first",
        "swarm). Commands name a swarm first: `!deploy prod:dev`, `!services staging:`.",
        'See docs/OPERATING.md, "Several swarms".',
        "",
    ]
    return "\n".join(out).rstrip() + "\n"


def missing(example: str) -> list[str]:
    """Schema keys the example does not explain (a test keeps this empty)."""
    keys, _, _ = _parse(example)
    return [
        f"{section}.{key}"
        for section, schema in SCHEMA.items()
        for key in schema
        if not (keys.get(section, {}).get(key) or (section, key) == ("notices", "route"))
    ]


if __name__ == "__main__":
    sys.stdout.write(generate(EXAMPLE.read_text(encoding="utf-8")))
