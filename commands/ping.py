"""``!ping``: a round trip through the queue to a worker and back, without touching Docker.
Answers "is a worker alive and taking jobs?" (and is the benchmark's no-op job)."""

from __future__ import annotations

from bot.core.operations import Answer, JobRun, WorkerTools
from bot.core.replies import Reply
from bot.core.wire import Result
from commands.base import Command


def render(result: Result) -> Reply:
    return Reply(f"pong from worker {result.data.get('worker', '?')}", status="ok", job=result.job)


def handle(tools: WorkerTools, run: JobRun) -> Answer:
    return Answer(True, {"worker": tools.consumer}, "pong")


COMMAND = Command(
    name="ping",
    summary="check that a worker is online and taking jobs (touches nothing)",
    examples=("!ping",),
    read_only=True,
    handler=handle,
    render=render,
)
