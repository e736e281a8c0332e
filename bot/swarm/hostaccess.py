"""Specs that give a container the host: refused by ``!check`` and ``!deploy`` unless the
stack is listed in ``security.host_access_stacks``.

Whoever may deploy a stack from chat would otherwise be root on every node: a bind mount
of ``/`` or of the docker socket, a privileged container, ``CAP_SYS_ADMIN``, the host's PID
namespace or its devices each hand a container the machine it runs on (the probe read the
host's ``/etc/shadow`` and drove the docker socket from such a stack). Some stacks need
part of this on purpose (Traefik and swarmbot itself read the docker socket; a node
exporter reads ``/`` read-only): the operator lists those, by name, and owns that choice.

Judged on the rendered file (``docker stack config``), so relative paths, ``..`` and
variables are already resolved to what the engine would mount.
"""

from __future__ import annotations

import posixpath
from typing import Any

from bot.swarm.preflight import volume_sources

# Capabilities that amount to root on the host, or reach past the container's namespaces.
DANGEROUS_CAPS = frozenset(
    {
        "ALL",
        "SYS_ADMIN",
        "SYS_MODULE",
        "SYS_RAWIO",
        "SYS_PTRACE",
        "SYS_BOOT",
        "SYS_TIME",
        "DAC_READ_SEARCH",
        "NET_ADMIN",
        "BPF",
        "PERFMON",
        "MAC_ADMIN",
        "MAC_OVERRIDE",
        "SYSLOG",
        "LINUX_IMMUTABLE",
    }
)
# Host paths that hold the machine: a bind mount of one of these, or of anything under it.
HOST_PATHS = (
    "/etc",
    "/proc",
    "/sys",
    "/dev",
    "/boot",
    "/root",
    "/run",
    "/var/run",
    "/var/lib/docker",
    "/var/lib/containerd",
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib64",
)
SOCKETS = ("docker.sock", "containerd.sock", "dockershim.sock")
HOST_NAMESPACES = ("pid", "ipc", "userns_mode", "uts", "cgroup")


def _host_path(source: str) -> str:
    """Why a bind-mount source gives the host away, or ""."""
    path = posixpath.normpath(source) if source else ""
    if path in ("/", "//"):
        return "the host's root filesystem"
    if path.endswith(SOCKETS):
        return "the container engine's socket (root on the node)"
    for top in HOST_PATHS:
        if path == top or path.startswith(top + "/"):
            return f"the host's {top}"
    return ""


def findings(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(key, why) for each part of one rendered service that gives it the host."""
    out: list[tuple[str, str]] = []
    if service.get("privileged"):
        out.append(("privileged", "a privileged container has every device and capability"))
    caps = {str(c).upper().removeprefix("CAP_") for c in service.get("cap_add") or []}
    for cap in sorted(caps & DANGEROUS_CAPS):
        out.append(("cap_add", f"capability {cap} reaches past the container"))
    for kind, source in volume_sources(service):
        why = _host_path(source) if kind == "bind" else ""
        if why:
            out.append(("volumes", f"bind mount of {source}: {why}"))
    for key in HOST_NAMESPACES:
        if str(service.get(key) or "") == "host":
            out.append((key, f"{key}: host shares the host's namespace"))
    if service.get("network_mode") == "host":
        out.append(("network_mode", "network_mode: host shares the host's network"))
    if service.get("devices"):
        out.append(("devices", "host devices passed into the container"))
    for opt in service.get("security_opt") or []:
        if "unconfined" in str(opt):
            out.append(("security_opt", f"{opt} turns a protection off"))
    return out
