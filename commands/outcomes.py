"""How restart and deploy outcomes read in chat; shared by ``!restart`` and ``!deploy``."""

from __future__ import annotations

from typing import Any

from bot.core.replies import Table
from bot.core.wire import OutcomeData, OutcomeState

STATE_WORDS: dict[OutcomeState, str] = {
    "converged": "converged",
    "failed": "FAILED",
    "rolled_back": "ROLLED BACK",
    "paused": "PAUSED",
    "timeout": "NOT CONVERGED (deadline)",
}


def outcome_table(outcomes: list[OutcomeData]) -> Table:
    flagged = frozenset(i for i, o in enumerate(outcomes) if o["state"] != "converged")
    return Table(
        ("SERVICE", "RESULT", "REPLICAS", "TIME", "REASON"),
        tuple(
            (
                o["service"],
                STATE_WORDS.get(o["state"], o["state"]),
                f"{o['running']}/{o['desired']}",
                f"{o['seconds']:.1f}s",
                o["reason"][:160],
            )
            for o in outcomes
        ),
        flagged,
    )


def progress_line(data: dict[str, Any]) -> str:
    """``dev: gerrit 1/1, trac 0/1``: one line that the adapters keep editing."""
    done = data.get("done")
    prefix = f"[done: {', '.join(done)}] " if done else ""
    if "deploying" in data:  # !deploy all: every stack on its way, in one line
        parts = [f"{stack} {at}" for stack, at in sorted(data["deploying"].items())]
        return prefix + ("; ".join(parts) or "starting")
    stack = data.get("stack", "")
    parts = []
    for s in data.get("services", []):
        name = (
            s["name"][len(stack) + 1 :]
            if stack and s["name"].startswith(stack + "_")
            else s["name"]
        )
        mark = " ✗" if s["state"] in ("failed", "rolled_back", "paused") else ""
        parts.append(f"{name} {s['running']}/{s['desired']}{mark}")
    head = f"{stack}: " if stack else ""
    return prefix + head + (", ".join(parts) or "starting")


def log_lines(outcomes: list[OutcomeData]) -> tuple[str, ...]:
    """The last log lines of each service that did not converge, under its name."""
    lines: list[str] = []
    for o in outcomes:
        if o.get("logs"):
            lines.append(f"{o['service']}, last log lines:")
            lines.extend(f"  {line}" for line in o["logs"])
    return tuple(lines)
