"""``docker stack deploy``, which only the docker CLI implements (the Engine API and the
Python SDK have no stacks: the CLI converts the compose file into networks and services
itself). Run with an argument list, never a shell, and a minimal environment: the worker's
own environment holds the signing secret, and compose interpolation would hand any of it
to a stack file that asked for ``${SWARMBOT_SIGNING_SECRET}``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bot.core.ids import STACK_NAME

CLI_TIMEOUT_SECONDS = 180.0  # deploy.cli_timeout_seconds
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
    timeout: float = CLI_TIMEOUT_SECONDS  # a call that takes longer is killed and reported

    @classmethod
    def find(cls, name: str, timeout: float = CLI_TIMEOUT_SECONDS) -> DockerCli:
        path = shutil.which(name)
        if path is None:
            raise DeployError(f"docker CLI {name!r} not found; set deploy.docker_cli")
        probe = cls(path, "unknown", min(timeout, 30))
        code, out, _err = _run(
            probe, ["version", "--format", "{{.Client.Version}}"], _base_env(), Path("/")
        )
        return cls(path, out.strip() if code == 0 and out.strip() else "unknown", timeout)


def stack_files(stacks_dir: Path) -> dict[str, Path]:
    """The deployable stacks: ``<name>.yaml`` files whose name is a valid stack name.

    This listing is the allowlist for ``!deploy``: a requested name is looked up here and
    nowhere else, so no path, glob or traversal can reach the CLI. (``<name>.override.yaml``
    is not a stack: the dot keeps it out.)
    """
    out: dict[str, Path] = {}
    for path in sorted(stacks_dir.glob("*.yaml")):
        if STACK_NAME.match(path.stem) and regular_file(path):
            out[path.stem] = path
    return out


def regular_file(path: Path) -> bool:
    """A regular file itself, not a symlink to one: a link ``x.yaml -> /etc/shadow`` in the
    stacks folder (or in git) must not make the worker read, and quote, what it points to."""
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


def refused_files(stacks_dir: Path) -> list[str]:
    """``*.yaml`` names in the folder that are not stacks because they are not regular files
    (symlinks, folders, devices): ``check-config`` names them, so nobody wonders why."""
    return [
        p.name
        for p in sorted(stacks_dir.glob("*.yaml"))
        if STACK_NAME.match(p.stem) and not regular_file(p)
    ]


def check_size(file: Path, limit: int) -> None:
    """Refuse a stack file (or its override) over ``limit`` bytes before anything reads it."""
    for path in compose_files(file):
        size = path.lstat().st_size
        if size > limit:
            raise DeployError(
                f"{path.name} is {size:,} bytes, over deploy.max_stack_file_bytes ({limit:,})"
            )


# A quoted snippet in the CLI's or YAML's error is kept only when it is a name (a key, a
# service, a network); anything else may be a line of the file, which is never repeated
# into chat, logs or the audit trail.
_QUOTED = re.compile(r"`[^`\n]*`|'[^'\n]*'|\"[^\"\n]*\"")
_NAME_LIKE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


# compose's schema names an unknown key unquoted: a line of a file that is not a stack
# file at all ("root:$y$…:19000:…" of a shadow file) comes back whole as that "key".
_UNKNOWN_KEYS = re.compile(r"(Additional propert(?:y|ies) )(.+?)( (?:is|are) not allowed)")


def without_content(message: str) -> str:
    """``message`` with every quoted snippet, and every unknown "key", that is not a plain
    name replaced by ``…``."""

    def keep_names(match: re.Match[str]) -> str:
        quoted = match.group(0)
        return quoted if _NAME_LIKE.match(quoted[1:-1]) else quoted[0] + "…" + quoted[-1]

    def keep_keys(match: re.Match[str]) -> str:
        keys = [k if _NAME_LIKE.match(k) else "…" for k in match.group(2).split(", ")]
        return match.group(1) + ", ".join(keys) + match.group(3)

    return _QUOTED.sub(keep_names, _UNKNOWN_KEYS.sub(keep_keys, message))


OVERRIDE_SUFFIX = ".override.yaml"


def compose_files(file: Path) -> list[Path]:
    """The stack file, then ``<name>.override.yaml`` beside it if there is one.

    The override holds the operator's own changes to a file they did not write (swarmbot's
    own stack: the image, Slack instead of Matrix), so the shipped file can be replaced on
    upgrade. Both go to the CLI as ``--compose-file``, later over earlier, as compose does.
    """
    override = file.with_name(file.stem + OVERRIDE_SUFFIX)
    return [file, override] if regular_file(override) else [file]


class NoRender(DeployError):
    """This docker CLI cannot render stack files (`docker stack config` came in 23.0)."""


def _run(
    cli: DockerCli, args: list[str], env: dict[str, str], cwd: Path, timeout: float | None = None
) -> tuple[int, str, str]:
    """Run the CLI in a session of its own, so that a CLI that hangs past ``timeout`` is
    killed together with every process it started (``subprocess.run`` kills only the CLI,
    and then waits forever on the pipes a surviving child still holds)."""
    proc = subprocess.Popen(
        [cli.path, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )
    timeout = cli.timeout if timeout is None else min(timeout, cli.timeout)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise DeployError(
            f"docker did not answer within {timeout:.0f}s (docker {' '.join(args[:2])}); "
            "it was stopped"
        ) from None
    return proc.returncode, out, err


def _file_args(files: list[Path]) -> list[str]:
    return [arg for f in files for arg in ("--compose-file", str(f))]


def render(cli: DockerCli, file: Path, variables: dict[str, str]) -> dict[str, Any]:
    """The stack file (and its override) as the CLI will deploy it: interpolated with
    ``variables``, merged, paths made absolute. Raises ``DeployError`` with the CLI's
    message if it refuses."""
    env = {**_base_env(), **variables}
    args = ["stack", "config", *_file_args(compose_files(file))]
    code, out, err = _run(cli, args, env, file.parent, 60)
    if code != 0:
        if "unknown command" in err or "is not a docker command" in err or "Usage:" in err:
            raise NoRender(f"docker CLI {cli.version} has no `stack config` (needs 23 or newer)")
        raise DeployError(
            without_content(_last_lines(err.strip())) or "docker stack config failed"
        )
    try:
        return yaml.safe_load(out) or {}
    except yaml.YAMLError as exc:
        raise DeployError(
            f"docker stack config printed something that is not YAML: {exc}"
        ) from None


def deploy(
    cli: DockerCli,
    stack: str,
    file: Path,
    variables: dict[str, str],
    resolve_image: str,
    override: str | None = None,
    prune: bool = False,
) -> str:
    """Run the deploy; returns the CLI's output. The stack name is the file's name.
    ``override`` is compose text merged over the file and its own override (swarmbot's
    fingerprint labels and versioned config names); ``prune`` removes the stack's services
    that are no longer in the files (``--prune``; volumes stay, as always)."""
    if not STACK_NAME.match(stack) or file.stem != stack:
        raise DeployError(f"refusing to deploy {stack!r} from {file.name}")
    env = {**_base_env(), **variables}
    with tempfile.TemporaryDirectory(prefix="swarmbot-") as tmp:
        files = _file_args(compose_files(file))
        if override is not None:
            extra = Path(tmp) / "override.yaml"
            extra.write_text(override)
            files += ["--compose-file", str(extra)]
        args = ["stack", "deploy", *files, "--resolve-image", resolve_image]
        args += ["--prune", stack] if prune else [stack]
        code, out, err = _run(cli, args, env, file.parent)
    output = (out + err).strip()
    if code != 0:
        raise DeployError(
            without_content(_last_lines(output)) or f"docker stack deploy exited {code}"
        )
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


def remove_service(cli: DockerCli, service_id: str) -> None:
    """``docker service rm``: the service and its tasks; never a volume it used."""
    code, out, err = _run(cli, ["service", "rm", service_id], _base_env(), Path("/"))
    if code != 0:
        raise DeployError(_last_lines((out + err).strip()) or f"docker service rm exited {code}")


def remove(cli: DockerCli, stack: str) -> str:
    """``docker stack rm``: services, networks, secrets and configs of the stack; never its
    volumes (the CLI does not remove them, and the bot has no volume operation at all)."""
    if not STACK_NAME.match(stack):
        raise DeployError(f"refusing to remove {stack!r}")
    code, out, err = _run(cli, ["stack", "rm", stack], _base_env(), Path("/"))
    output = (out + err).strip()
    if code != 0:
        raise DeployError(_last_lines(output) or f"docker stack rm exited {code}")
    return output


def rollback(cli: DockerCli, service_id: str) -> str:
    """``docker service rollback``: back to the service's previous spec. The Engine API does
    it with ``update?rollback=previous``, which the Python SDK does not expose; the CLI is
    the public way."""
    if not re.match(r"^[a-z0-9]{25}$", service_id):
        raise DeployError(f"refusing to roll back {service_id!r}")
    code, out, err = _run(
        cli,
        ["service", "rollback", "--detach", "--quiet", service_id],
        _base_env(),
        Path("/"),
    )
    if code != 0:
        raise DeployError(
            _last_lines((out + err).strip()) or f"docker service rollback exited {code}"
        )
    return out
