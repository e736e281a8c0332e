"""``!stacks``: the stack files known, which stacks are deployed, and (stacks from git)
the commit each runs and how many of the branch's commits to its files it lacks."""

from __future__ import annotations

from typing import Any

from bot.core.locks import ALL
from bot.core.operations import Answer, JobRun, WorkerTools
from bot.core.replies import Reply, Table, plural
from bot.core.wire import Result
from commands.base import Command, error_reply
from commands.services import TROUBLE, state_of


def render(result: Result) -> Reply:
    if not result.ok:
        return error_reply(result)
    rows = result.data["rows"]
    if not rows:
        return Reply("no stacks", status="ok", job=result.job)
    flagged = frozenset(
        i for i, r in enumerate(rows) if r["healthy"] < r["services"] or not r["file"]
    )
    git = any("git" in r for r in rows)
    locked = any("lock" in r for r in rows)
    header = (
        ("STACK", "FILE", "DEPLOYED", "SERVICES")
        + (("COMMIT", "BRANCH") if git else ())
        + (("LOCKED",) if locked else ())
    )
    table = Table(
        header,
        tuple(
            (
                r["name"],
                "yes" if r["file"] else "no file",
                "yes" if r["services"] else "no",
                f"{r['healthy']}/{r['services']} healthy" if r["services"] else "-",
            )
            + ((_commit(r.get("git")), _behind(r.get("git"))) if git else ())
            + ((str(r.get("lock", "")),) if locked else ())
            for r in rows
        ),
        flagged,
    )
    detail = tuple(
        f"{r['name']}: {c['short']} {c['subject']} ({c['author']})"
        for r in rows
        for c in (r.get("git") or {}).get("behind", [])
    )
    return Reply(plural(len(rows), "stack"), table, detail, status="ok", job=result.job)


def _commit(info: dict[str, Any] | None) -> str:
    """The commit a stack runs: ``abc1234 Bump gerrit (Bob)``."""
    if not info:
        return "-"
    if "commit" not in info:
        return str(info.get("error", "-"))[:80]
    c = info["commit"]
    mixed = " (services differ)" if info.get("mixed") else ""
    return f"{c['short']} {c['subject'][:50]} ({c['author']}){mixed}"


def _behind(info: dict[str, Any] | None) -> str:
    """How far the branch is ahead in the stack's own files: ``3 commits behind main``."""
    if not info or "behind_count" not in info:
        return "-"
    count = info["behind_count"]
    if not count:
        return f"up to date with {info['branch']}"
    return f"{plural(count, 'commit')} behind {info['branch']}"


def handle(tools: WorkerTools, run: JobRun) -> Answer:
    job = run.job
    source = tools.files.source()
    files = tools.files.stack_files(source)
    deployed: dict[str, list[dict[str, Any]]] = {}
    for service in tools.engine.service_rows():
        if service["stack"]:
            deployed.setdefault(service["stack"], []).append(service)
    names = [
        name
        for name in sorted(set(files) | set(deployed))
        if tools.policy.may_touch(job.requester, job.command, name).allowed
    ]
    commits = tools.files.stack_commits([n for n in names if n in deployed], source)
    locks = tools.locks()
    rows = []
    for name in names:
        services = deployed.get(name, [])
        row: dict[str, Any] = {
            "name": name,
            "file": name in files,
            "services": len(services),
            "healthy": sum(1 for s in services if state_of(s) not in TROUBLE),
        }
        if name in commits:
            row["git"] = commits[name]
        lock = locks.get(name) or locks.get(ALL)
        if lock is not None:
            row["lock"] = f"{lock.holder}: {lock.reason}"
        rows.append(row)
    return Answer(True, {"rows": rows}, plural(len(rows), "stack"))


COMMAND = Command(
    name="stacks",
    summary="list the stack files and which stacks are deployed",
    examples=("!stacks",),
    read_only=True,
    handler=handle,
    render=render,
)
