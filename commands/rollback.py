"""``!rollback <service>``: back to the service's previous spec, with the same outcome
reporting as a deploy (asks for confirmation by default: it undoes someone's change)."""

from __future__ import annotations

from commands.base import Command, service_arg
from commands.outcomes import progress_line
from commands.restart import change_renderer

COMMAND = Command(
    name="rollback",
    summary="return a service to its previous spec (docker service rollback) and wait until it "
    "has converged",
    args=(service_arg(),),
    examples=("!rollback gerrit",),
    job=lambda args: ("rollback", {"service": args["service"]}),
    render=change_renderer("rolled back", "rollback"),
    render_progress=progress_line,
)
