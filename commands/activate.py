"""``!activate <node>``: a paused or drained node takes new tasks again."""

from __future__ import annotations

from commands.base import Command
from commands.drain import handler, node_arg, notice, render

COMMAND = Command(
    name="activate",
    summary="let a paused or drained node take new tasks again (--availability active)",
    args=(node_arg(),),
    examples=("!activate worker2",),
    handler=handler("active"),
    render=render,
    notice=notice("active"),
)
