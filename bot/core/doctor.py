"""What ``swarmbot doctor`` and ``!doctor`` report: one line per check, with the fix when
it fails. The checks that need nothing but the standard library live here (IPVS present,
an HTTP endpoint reachable from this process's network); the worker adds Docker and Redis,
the bot its chat platform."""

from __future__ import annotations

import glob
import os
import tomllib
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bot.core.whereabouts import Whereabouts

HTTP_TIMEOUT = 5.0


@dataclass(frozen=True)
class Finding:
    check: str  # "docker", "redis", "ipvs", "homeserver", ...
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        head = f"{'ok  ' if self.ok else 'FAIL'} {self.check}: {self.detail}"
        return head if self.ok or not self.fix else f"{head} (fix: {self.fix})"

    def as_data(self) -> dict[str, Any]:
        return asdict(self)


def docker(where: Whereabouts | None, wrong: str = "", error: str = "") -> Finding:
    """The daemon, node and swarm a worker stands on (``where``; None when Docker did not
    answer, with ``error``); ``wrong``: why it serves another swarm than the one found."""
    if where is None:
        fix = "mount the manager's dockerd socket into the worker (or set DOCKER_HOST)"
        return Finding("docker", False, f"not reachable: {error}", fix)
    if wrong:
        fix = f"!swarm accept {where.swarm_id}, or mount the right daemon's socket"
        return Finding("docker", False, wrong, fix)
    if not where.manager:
        return Finding("docker", False, where.said(), "run the worker on a manager node")
    return Finding("docker", True, where.said())


def ipvs(proc_modules: str = "/proc/modules", modules_root: str = "/lib/modules") -> Finding:
    """The kernel module overlay virtual IPs need: loaded, or there to load. Read from
    /proc and /lib/modules: Debian 12 installs no ``modprobe``, and a container has none."""
    try:
        text = Path(proc_modules).read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    loaded = any(line.split(" ", 1)[0] == "ip_vs" for line in text.splitlines())
    if loaded:
        return Finding("ipvs", True, "the ip_vs module is loaded (overlay virtual IPs work)")
    release = os.uname().release
    found = glob.glob(f"{modules_root}/{release}/kernel/net/netfilter/ipvs/ip_vs.ko*")
    if found:
        return Finding("ipvs", True, "the ip_vs module is there to load (swarm loads it)")
    return Finding(
        "ipvs",
        False,
        "no ip_vs module: services reached by name through an overlay network never answer",
        "deploy with the host-network override (stacks/swarmbot.host-network.yaml)",
    )


def reachable(check: str, url: str, fix: str) -> Finding:
    """An HTTP(S) endpoint answers from this process's network (any HTTP status counts:
    it was reached)."""
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT) as resp:  # noqa: S310 (config URL)
            status = resp.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return Finding(check, False, f"{url}: {reason}", fix)
    return Finding(check, True, f"{url} answers (HTTP {status})")


def chat_endpoints(source: Path | None) -> list[tuple[str, str]]:
    """(check, URL) of the chat platforms a config file names, read from the file as it
    is: the worker is given no chat settings, yet its network is the one to check too."""
    if source is None:
        return []
    try:
        raw = tomllib.loads(source.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    adapters = (raw.get("bot") or {}).get("adapters") or []
    out = []
    homeserver = (raw.get("matrix") or {}).get("homeserver")
    if "matrix" in adapters and isinstance(homeserver, str):
        out.append(("homeserver", homeserver.rstrip("/") + "/_matrix/client/versions"))
    api = (raw.get("slack") or {}).get("api_url", "https://slack.com/api/")
    if "slack" in adapters and isinstance(api, str):
        out.append(("slack", api.rstrip("/") + "/api.test"))
    return out


def chat_reachable(source: Path | None) -> list[Finding]:
    fix = (
        "let containers reach it (DNS, a proxy, a firewall rule), or run the bot on the "
        "host network (stacks/swarmbot.host-network.yaml)"
    )
    return [reachable(check, url, fix) for check, url in chat_endpoints(source)]
