"""``!deploy <stack|all>``: ``docker stack deploy`` of ``stacks/<stack>.yaml``, then wait."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Mapping
from typing import Any

from bot.core import waves
from bot.core.operations import (
    Answer,
    JobRun,
    Notice,
    StackSource,
    WorkerTools,
    commit_words,
    who,
)
from bot.core.replies import Reply, plural, render_table_plain
from bot.core.wire import DeployReport, Job, Result
from commands.base import REF_ARG, Arg, Command, error_reply, stack_arg
from commands.check import problem_table
from commands.outcomes import log_lines, outcome_table, progress_line


def _stack_reply(stack: dict[str, Any], job: str) -> Reply:
    name = stack["stack"]
    notes = tuple(n for n in [stack.get("note", "")] if n)
    if stack.get("unchanged"):
        return Reply(
            f"{name} already matches its file: nothing deployed (an unchanged redeploy would "
            f"wipe each service's rollback target); !deploy {name} --force redeploys anyway",
            detail=_removals(stack),
            status="ok",
            job=job,
        )
    if stack.get("error") and stack.get("problems"):
        table = problem_table(stack["problems"])
        return Reply(f"deploy of {name} stopped: {stack['error']}", table, notes, "failed", job)
    if stack.get("error"):
        return Reply(f"deploy of {name} failed: {stack['error']}", status="failed", job=job)
    name, outcomes = stack["stack"], stack["outcomes"]
    notes += _removals(stack)
    bad = [o for o in outcomes if o["state"] != "converged"]
    if not outcomes:
        head = f"deployed {stack['stack']}{at_commit(stack)}: the stack has no services"
    elif bad:
        head = (
            f"deploy of {name} FAILED: {len(bad)} of {plural(len(outcomes), 'service')} "
            "not converged"
        )
    else:
        count = plural(len(outcomes), "service")
        head = f"deployed {name}{at_commit(stack)}: {count} converged in {stack['seconds']:.1f}s"
    return Reply(
        head,
        outcome_table(outcomes) if outcomes else None,
        log_lines(outcomes) + notes,
        status="failed" if bad else "ok",
        job=job,
    )


def _removals(stack: Mapping[str, Any]) -> tuple[str, ...]:
    """Services the file no longer has: removed by --prune (volumes kept), or left."""
    lines = []
    if stack.get("removed"):
        lines.append(f"removed (no longer in the file): {', '.join(stack['removed'])}")
        if stack.get("volumes_kept"):
            kept = ", ".join(stack["volumes_kept"])
            lines.append(f"volumes kept (the bot never deletes data): {kept}")
    if stack.get("objects_removed"):
        lines.append(
            "old config/secret versions no service uses, removed: "
            + ", ".join(stack["objects_removed"])
        )
    if stack.get("orphans"):
        lines.append(
            f"still running though no longer in the file: {', '.join(stack['orphans'])}; "
            f"!deploy {stack['stack']} --prune removes them (their volumes stay)"
        )
    return tuple(lines)


def render(result: Result) -> Reply:
    data = result.data
    if "stack" in data:
        return _stack_reply(data, result.job)
    if "stacks" not in data:
        return error_reply(result)
    replies = [_stack_reply(s, result.job) for s in data["stacks"]]
    lines: list[str] = []
    for r in replies:
        lines.append(r.text)
        if r.status != "ok" and r.table is not None:
            lines.extend(render_table_plain(r.table))
    skipped = data["skipped"]
    lines += [f"not deployed: {s['stack']} ({s['why']})" for s in skipped]
    total = len(data["stacks"]) + len(skipped)
    failed = [s["stack"] for s in data["stacks"] if not s["ok"]]
    if result.ok:
        head = f"deployed all {plural(total, 'stack')} in {data['seconds']:.1f}s"
    else:
        head = (
            f"deploy all: {len(data['stacks']) - len(failed)} of {plural(total, 'stack')} "
            f"deployed, {len(failed)} failed ({', '.join(failed)})"
            + (f", {len(skipped)} not deployed" if skipped else "")
        )
    return Reply(head, detail=tuple(lines), status="ok" if result.ok else "failed", job=result.job)


def handle(tools: WorkerTools, run: JobRun) -> Answer:
    if run.args["stack"] == "all":
        return _deploy_all(tools, run)
    stack = run.args["stack"]
    tools.allow(run.job, stack)
    option = run.args.get("option")
    result = tools.deploy_stack(
        stack,
        run,
        force=option == "--force",
        prune=option == "--prune",
        source=tools.files.source(run.args.get(REF_ARG)),
    )
    return Answer(result["ok"], result, summary(result))


def _deploy_all(tools: WorkerTools, run: JobRun) -> Answer:
    """Every stack once the stacks it needs are deployed, those that need nothing of each
    other at the same time; a failure stops only the stacks that need the failed one."""
    started = time.monotonic()
    source = tools.files.source(run.args.get(REF_ARG))  # one commit for every stack
    order, needs = tools.files.deploy_plan(source)
    for stack in order:
        tools.allow(run.job, stack)  # all or nothing: refuse before deploying any
    reports, skipped = _in_waves(tools, run, needs, source)
    done = [reports[s] for s in order if s in reports]
    ok = all(r["ok"] for r in done) and not skipped
    data = {
        "stacks": done,
        "skipped": [{"stack": s, "why": skipped[s]} for s in order if s in skipped],
        "ok": ok,
        "seconds": round(time.monotonic() - started, 1),
    }
    failed = sum(1 for r in done if not r["ok"])
    summary = f"{len(done) - failed}/{plural(len(order), 'stack')} deployed" + (
        "" if ok else f", {failed} failed, {len(skipped)} not deployed"
    )
    return Answer(ok, data, summary)


def _in_waves(
    tools: WorkerTools, run: JobRun, needs: dict[str, set[str]], source: StackSource
) -> tuple[dict[str, DeployReport], dict[str, str]]:
    """Each stack under its own lock with its own outcome, once the stacks it needs are
    deployed (``bot.core.waves``); one progress line for them all."""
    lock = threading.Lock()
    running: dict[str, str] = {}  # stack -> what it is at ("2/3 services", "waiting ...")
    done: list[str] = []

    def step(stack: str) -> DeployReport:
        def on_progress(data: dict[str, Any]) -> None:
            with lock:
                running[stack] = _stack_progress(data)
                merged = {"deploying": dict(running), "done": list(done)}
            run.progress(merged)

        with lock:
            running[stack] = "starting"
        try:
            return tools.deploy_stack(stack, run.with_progress(on_progress), source=source)
        finally:
            with lock:
                running.pop(stack, None)
                done.append(stack)

    return waves.run(needs, step, lambda report: report["ok"])


def _stack_progress(data: dict[str, Any]) -> str:
    """One stack's part of the ``!deploy all`` progress line."""
    if "waiting" in data:
        return str(data["waiting"])
    rows = data.get("services") or []  # the services still watched: done ones drop out
    total = int(data.get("total", len(rows)))
    whole = total - len(rows) + sum(1 for r in rows if r["state"] == "converged")
    return f"{whole}/{plural(total, 'service')} converged"


def summary(result: DeployReport) -> str:
    if result.get("unchanged"):
        return f"{result['stack']}: unchanged, not deployed"
    if result["error"]:
        return f"{result['stack']}: {result['error'].splitlines()[-1]}"
    bad = [o for o in result["outcomes"] if o["state"] != "converged"]
    return f"{result['stack']}: " + (
        "converged" if not bad else f"{plural(len(bad), 'service')} not converged"
    )


def notice(job: Job, data: Mapping[str, Any]) -> list[Notice]:
    """One notice per stack the job deployed (or failed to); none for an unchanged one."""
    return [_stack_notice(job, d) for d in data.get("stacks", [data]) if _told(d)]


def _told(data: Mapping[str, Any]) -> bool:
    return "stack" in data and not data.get("unchanged")


def _stack_notice(job: Job, data: Mapping[str, Any]) -> Notice:
    stack = data["stack"]
    lines = [
        f"{c['service']}: {c['change']}: {'; '.join(c['details'])}"
        for c in data.get("changes") or []
        if c["change"] != "would be removed"
    ]
    lines += [f"{name}: removed (no longer in the file)" for name in data.get("removed") or []]
    if data.get("error"):
        return Notice(
            stack,
            f"deploy of {stack}{at_commit(data)} {who(job)} FAILED: {data['error']}",
            tuple(lines),
            "failed",
        )
    outcomes = data.get("outcomes") or []
    bad = [o for o in outcomes if o["state"] != "converged"]
    if bad:
        lines += [f"{o['service']}: {o['state']}: {o['reason']}" for o in bad]
        text = (
            f"deploy of {stack}{at_commit(data)} {who(job)} FAILED "
            f"({len(bad)} of {plural(len(outcomes), 'service')})"
        )
        return Notice(stack, text, tuple(lines), "failed")
    text = (
        f"{stack} deployed{at_commit(data)} {who(job)}: converged in {data.get('seconds', 0):.1f}s"
    )
    return Notice(stack, text, tuple(lines))


def at_commit(data: Mapping[str, Any]) -> str:
    """`` at abc1234 "Bump gerrit" (Bob)`` for a deploy from git, else ""."""
    commit = data.get("commit")
    return f" at {commit_words(commit)}" if commit else ""


def _confirm_text(args: dict[str, str]) -> str:
    if args["stack"] == "all":
        return (
            "this deploys every stack, each once the stacks it needs are up (those that need "
            "nothing of each other at the same time); a failed stack stops only the stacks "
            "that need it"
        )
    if args.get("option") == "--prune":
        return (
            f"this deploys stack {args['stack']} and removes its services that are no longer "
            f"in {args['stack']}.yaml (their volumes are kept; !diff {args['stack']} lists them)"
        )
    at = f" at {args[REF_ARG]}" if args.get(REF_ARG) else ""
    return f"this deploys stack {args['stack']}{at}"


COMMAND = Command(
    schedulable=True,
    name="deploy",
    summary="deploy stacks/<stack>.yaml as stack <stack> and wait until every service has "
    "converged; 'all' deploys every stack, each after the stacks it needs, in parallel where "
    "they need nothing of each other; --prune "
    "also removes the stack's services that are no longer in the file (volumes stay)",
    args=(
        stack_arg(allow_all=True, at_ref=True),
        Arg(
            "option",
            re.compile(r"^--(force|prune)$"),
            "--force or --prune",
            optional=True,
            shown="--force|--prune",
        ),
    ),
    examples=(
        "!deploy dev",
        "!deploy dev@v1.4",
        "!deploy all",
        "!deploy dev --force",
        "!deploy dev --prune",
        "!deploy dev at 22:00",
        "!deploy prod --when-open",
    ),
    stack_param="stack",
    locks_stack=True,
    handler=handle,
    confirm_text=_confirm_text,
    notice=notice,
    render=render,
    render_progress=progress_line,
)
