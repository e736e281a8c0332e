"""``!ping``: a round trip through the queue to a worker and back, without touching Docker.
Answers "is a worker alive and taking jobs, and where does it act?": the daemon its socket
reaches, that daemon's node, and the swarm (as the worker last looked, at its start and
every few seconds since). It is also the benchmark's no-op job."""

from __future__ import annotations

import contextlib

from bot.core.operations import Answer, JobRun, WorkerTools
from bot.core.replies import Reply
from bot.core.whereabouts import Whereabouts
from bot.core.wire import Result
from commands.base import Command


def render(result: Result) -> Reply:
    head = f"pong from worker {result.data.get('worker', '?')}"
    where = result.data.get("where")
    if isinstance(where, dict):
        with contextlib.suppress(TypeError):  # an older worker's answer has other fields
            head += f": {Whereabouts(**where).said()}"
    return Reply(head, status="ok", job=result.job)


def handle(tools: WorkerTools, run: JobRun) -> Answer:
    where = tools.whereabouts().as_data()
    return Answer(True, {"worker": tools.consumer, "where": where}, "pong")


COMMAND = Command(
    name="ping",
    summary="check that a worker is online and taking jobs, and say which daemon, node and "
    "swarm it acts on (touches nothing)",
    examples=("!ping",),
    read_only=True,
    handler=handle,
    render=render,
)
