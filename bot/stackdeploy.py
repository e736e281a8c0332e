"""``docker stack deploy``, which only the docker CLI implements (the Engine API and the
Python SDK have no stacks: the CLI converts the compose file into networks and services
itself). Run with an argument list, never a shell, and a minimal environment: the worker's
own environment holds the signing secret, and compose interpolation would hand any of it
to a stack file that asked for ``${SWARMBOT_SIGNING_SECRET}``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bot.names import STACK_NAME

CLI_TIMEOUT_SECONDS = 180
# Passed through to the CLI so it can find the daemon and its own config, nothing else.
_PASSTHROUGH = (
    "PATH",
    "HOME",
    "DOCKER_HOST",
    "DOCKER_CONFIG",
    "DOCKER_CERT_PATH",
    "DOCKER_TLS_VERIFY",
)


class DeployError(Exception):
    """The CLI refused or failed; the message is safe to show in chat."""


@dataclass(frozen=True)
class DockerCli:
    path: str
    version: str

    @classmethod
    def find(cls, name: str) -> DockerCli:
        path = shutil.which(name)
        if path is None:
            raise DeployError(f"docker CLI {name!r} not found; set deploy.docker_cli")
        out = subprocess.run(
            [path, "version", "--format", "{{.Client.Version}}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env=_base_env(),
        )
        version = out.stdout.strip() or "unknown"
        return cls(path, version)


def stack_files(stacks_dir: Path) -> dict[str, Path]:
    """The deployable stacks: ``<name>.yaml`` files whose name is a valid stack name.

    This listing is the allowlist for ``!deploy``: a requested name is looked up here and
    nowhere else, so no path, glob or traversal can reach the CLI.
    """
    out: dict[str, Path] = {}
    for path in sorted(stacks_dir.glob("*.yaml")):
        if STACK_NAME.match(path.stem) and path.is_file():
            out[path.stem] = path
    return out


def deploy(
    cli: DockerCli, stack: str, file: Path, variables: dict[str, str], resolve_image: str
) -> str:
    """Run the deploy; returns the CLI's output. The stack name is the file's name."""
    if not STACK_NAME.match(stack) or file.stem != stack:
        raise DeployError(f"refusing to deploy {stack!r} from {file.name}")
    env = _base_env()
    env.update(variables)
    argv = [
        cli.path,
        "stack",
        "deploy",
        "--compose-file",
        str(file),
        "--resolve-image",
        resolve_image,
        stack,
    ]
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_SECONDS,
            check=False,
            env=env,
            cwd=file.parent,
        )
    except subprocess.TimeoutExpired:
        raise DeployError(
            f"docker stack deploy did not finish in {CLI_TIMEOUT_SECONDS}s"
        ) from None
    output = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        raise DeployError(_last_lines(output) or f"docker stack deploy exited {proc.returncode}")
    return output


def _base_env() -> dict[str, str]:
    return {k: os.environ[k] for k in _PASSTHROUGH if k in os.environ}


def _last_lines(text: str, n: int = 6) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    # The CLI's progress chatter ("Creating service x") is noise in an error report.
    lines = [
        line for line in lines if not re.match(r"^(Creating|Updating) (service|network) ", line)
    ]
    return "\n".join(lines[-n:])


def remove(cli: DockerCli, stack: str) -> str:
    """``docker stack rm``: services, networks, secrets and configs of the stack; never its
    volumes (the CLI does not remove them, and the bot has no volume operation at all)."""
    if not STACK_NAME.match(stack):
        raise DeployError(f"refusing to remove {stack!r}")
    proc = subprocess.run(
        [cli.path, "stack", "rm", stack],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_SECONDS,
        check=False,
        env=_base_env(),
    )
    output = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        raise DeployError(_last_lines(output) or f"docker stack rm exited {proc.returncode}")
    return output
