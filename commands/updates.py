"""``!updates [stack]``: which services run an image whose tag has moved in its registry,
or (with ``registry.semver``) has a newer tag. Pulls nothing; says how many registry
requests the answer took (one per image, not per service, and none while cached)."""

from __future__ import annotations

from bot.core.operations import Answer, JobRun, WorkerTools
from bot.core.replies import Reply, Table, plural
from bot.core.wire import Result
from commands.base import Command, error_reply, stack_arg


def short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12] if digest else "-"


def render(result: Result) -> Reply:
    data = result.data
    if "images" not in data:
        return error_reply(result)
    images = data["images"]
    news = [i for i in images if i["moved"] or i["newer"] or i["error"]]
    unpinned = [i["image"] for i in images if not i["running"] and not i["error"]]
    blind = (
        (
            f"not pinned to a digest, so a moved tag cannot be seen: {', '.join(unpinned)} "
            "(deployed with deploy.resolve_image = never)",
        )
        if unpinned
        else ()
    )
    requests = plural(data["requests"], "registry request")
    where = f" in {data['stack']}" if data.get("stack") else ""
    moved = sum(1 for i in news if i["moved"])
    newer = sum(1 for i in news if i["newer"])
    if not news:
        head = (
            f"no updates{where}: {plural(len(images), 'image')} of "
            f"{plural(data['services'], 'service')} match their registry ({requests})"
        )
        return Reply(head, detail=blind, status="ok", job=result.job)
    parts = [f"{moved} tag{'s' if moved != 1 else ''} moved"] if moved else []
    parts += [f"{newer} newer tag{'s' if newer != 1 else ''}"] if newer else []
    errors = sum(1 for i in news if i["error"])
    parts += [f"{errors} not checked"] if errors else []
    head = f"updates{where}: {', '.join(parts)} ({plural(len(images), 'image')}, {requests})"
    table = Table(
        ("IMAGE", "SERVICES", "RUNNING", "REGISTRY", "NEWER TAG"),
        tuple(
            (
                i["image"],
                ", ".join(i["services"]),
                short(i["running"]) if i["running"] else "not pinned",
                i["error"][:80] if i["error"] else short(i["current"]),
                i["newer"] or "-",
            )
            for i in news
        ),
        frozenset(n for n, i in enumerate(news) if i["moved"]),
    )
    stacks = sorted({s.split("_", 1)[0] for i in news if i["moved"] for s in i["services"]})
    detail = tuple(f"!deploy {s} --force applies the moved tags of {s}" for s in stacks) + blind
    return Reply(head, table, detail, status="ok", job=result.job)


def handle(tools: WorkerTools, run: JobRun) -> Answer:
    job = run.job
    stack = job.args.get("stack")
    if stack:
        tools.allow(job, stack)
    services = tools.visible(job, tools.engine.services(stack))
    data = {**tools.image_updates(services), "stack": stack or ""}
    moved = sum(1 for i in data["images"] if i["moved"])
    return Answer(True, data, f"{moved} moved of {plural(len(data['images']), 'image')}")


COMMAND = Command(
    name="updates",
    summary="list services whose image tag moved in the registry, or has a newer tag (with "
    "registry.semver); pulls nothing",
    args=(stack_arg(optional=True),),
    examples=("!updates", "!updates dev"),
    stack_param="stack",
    read_only=True,
    handler=handle,
    render=render,
)
