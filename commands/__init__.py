"""The commands, one module each. The registry is an explicit list, not plugin discovery:
what the bot can do is visible here and in review, and nothing is loaded by accident.
"""

from __future__ import annotations

from commands import (
    audit,
    cancel,
    check,
    confirm,
    deploy,
    diff,
    help,
    jobs,
    logs,
    ping,
    ps,
    restart,
    rollback,
    services,
    stacks,
    undeploy,
    whoami,
)
from commands.base import Command

REGISTRY: dict[str, Command] = {
    m.COMMAND.name: m.COMMAND
    for m in (
        help,
        whoami,
        ping,
        services,
        stacks,
        ps,
        restart,
        rollback,
        logs,
        check,
        diff,
        deploy,
        undeploy,
        jobs,
        cancel,
        confirm,
        audit,
    )
}
