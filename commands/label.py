"""``!label <node> key=value`` and ``!label <node> -key``: set or remove a node label
(``docker node update --label-add / --label-rm``), after a confirmation. Placement
constraints read these labels (``node.labels.tier == big``), so a change can move tasks;
``!check`` judges constraints against the labels as they are now, at once."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from bot.core.ids import hostname
from bot.core.operations import Answer, JobRun, Notice, WorkerTools, who
from bot.core.replies import Reply
from bot.core.wire import Job, Result
from commands.base import Arg, Command, error_reply
from commands.drain import node_arg

KEY = r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}"
CHANGE = re.compile(
    rf"^(?:-(?P<drop>{KEY})|(?P<key>{KEY})=(?P<value>[A-Za-z0-9._:/@-]{{0,128}}))$"
)


def handle(tools: WorkerTools, run: JobRun) -> Answer:
    node = tools.find_node(run.args["node"])
    host = hostname(node)
    labels = dict((node.get("Spec") or {}).get("Labels") or {})
    change = CHANGE.match(run.args["change"])
    assert change is not None  # the job schema is the same pattern
    key = change["drop"] or change["key"]
    value = None if change["drop"] else change["value"]
    wanted = {k: v for k, v in labels.items() if k != key}
    if value is not None:
        wanted[key] = value
    data: dict[str, Any] = {"node": host, "key": key, "value": value}
    if wanted == labels:
        return Answer(True, {**data, "unchanged": True}, f"{host}: label {key} unchanged")
    tools.turns.apply_once(
        run, f"label:{node['ID']}:{key}", lambda: tools.engine.set_node_labels(node["ID"], wanted)
    )
    data["labels"] = sorted(f"{k}={v}" for k, v in wanted.items())
    return Answer(True, data, f"{host}: {_said(key, value)}")


def _said(key: str, value: str | None) -> str:
    return f"label {key} removed" if value is None else f"labelled {key}={value}"


def render(result: Result) -> Reply:
    if "node" not in result.data:
        return error_reply(result)
    d = result.data
    if d.get("unchanged"):
        state = "has no label" if d["value"] is None else "already has the label"
        return Reply(f"{d['node']} {state} {d['key']}; nothing changed", job=result.job)
    labels = ", ".join(d["labels"]) or "none"
    return Reply(
        f"{d['node']}: {_said(d['key'], d['value'])}",
        detail=(f"labels now: {labels}",),
        status="ok",
        job=result.job,
    )


def notice(job: Job, data: Mapping[str, Any]) -> list[Notice]:
    if "labels" not in data:
        return []
    return [Notice("", f"node {data['node']} {_said(data['key'], data['value'])} {who(job)}")]


def confirm_text(args: Mapping[str, str]) -> str:
    change = CHANGE.match(args["change"])
    what = (
        f"removes label {change['drop']} from"
        if change and change["drop"]
        else f"sets label {args['change']} on"
    )
    return (
        f"this {what} node {args['node']}: services whose placement constraints read it may "
        "move (!check shows which constraints no node satisfies)"
    )


COMMAND = Command(
    name="label",
    summary="set (key=value) or remove (-key) a node label, which placement constraints read",
    args=(
        node_arg(),
        Arg(
            "change",
            CHANGE,
            "a label change: key=value, or -key to remove it",
            shown="key=value|-key",
        ),
    ),
    examples=("!label worker1 tier=big", "!label worker1 -tier"),
    handler=handle,
    render=render,
    confirm_text=confirm_text,
    notice=notice,
)
