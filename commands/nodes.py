"""``!nodes``: every node of the swarm, what it is, what it runs and what is reserved on it.
Answers "where can things run?" before a drain, and after a node went down."""

from __future__ import annotations

from bot.core.operations import Answer, JobRun, WorkerTools
from bot.core.replies import Reply, Table, plural
from bot.core.wire import Result
from commands.base import Command, error_reply


def size(n: float) -> str:
    """Bytes the way `docker node inspect` readers think of them: 512M, 7.8G."""
    for unit, scale in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= scale:
            value = n / scale
            return f"{value:.1f}{unit}" if value < 10 else f"{value:.0f}{unit}"
    return f"{int(n)}B"


def render(result: Result) -> Reply:
    if not result.ok:
        return error_reply(result)
    rows = result.data["rows"]
    # A node that cannot take tasks (down, drained, paused) is what an operator looks for.
    flagged = frozenset(
        i for i, r in enumerate(rows) if r["status"] != "ready" or r["availability"] != "active"
    )
    table = Table(
        ("NODE", "ROLE", "AVAILABILITY", "STATUS", "ENGINE", "LABELS", "TASKS", "CPU", "MEMORY"),
        tuple(
            (
                r["hostname"],
                r["role"],
                r["availability"],
                r["status"],
                r["engine"],
                ", ".join(f"{k}={v}" for k, v in sorted(r["labels"].items())) or "-",
                str(r["tasks"]),
                f"{r['cpus_reserved']:g}/{r['cpus']:g}",
                f"{size(r['memory_reserved'])}/{size(r['memory'])}",
            )
            for r in rows
        ),
        flagged,
    )
    head = plural(len(rows), "node")
    head += f", {len(flagged)} not taking tasks" if flagged else ", all ready and active"
    return Reply(
        head,
        table,
        ("CPU and MEMORY: reserved by running tasks / the node's",),
        status="ok",
        job=result.job,
    )


def handle(tools: WorkerTools, run: JobRun) -> Answer:
    rows = tools.engine.node_rows()
    return Answer(True, {"rows": rows}, plural(len(rows), "node"))


COMMAND = Command(
    name="nodes",
    summary="list the swarm's nodes: role, availability, status, engine, labels, tasks, "
    "reserved CPU and memory",
    examples=("!nodes",),
    read_only=True,
    handler=handle,
    render=render,
)
