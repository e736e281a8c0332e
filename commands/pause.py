"""``!pause <node>``: a node takes no new tasks; the ones it runs keep running."""

from __future__ import annotations

from commands.base import Command
from commands.drain import handler, node_arg, notice, render

COMMAND = Command(
    name="pause",
    summary="stop placing new tasks on a node; its running tasks stay (--availability pause)",
    args=(node_arg(),),
    examples=("!pause worker2",),
    handler=handler("pause"),
    render=render,
    notice=notice("pause"),
)
