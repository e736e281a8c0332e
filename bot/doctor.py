"""``swarmbot doctor``: run inside the deployed stack (``docker exec`` into the bot's or the
worker's container), one line per check with the fix: which daemon, node and swarm (where
there is a Docker socket), Redis, IPVS, the chat platforms from this container's network,
and, in the bot's container, the notices and alert rooms the bot has joined, and
Alertmanager's API. Exit 0 when all pass.

It sits beside the CLI, above the packages it checks: it reads Docker (``bot.swarm``), Redis
(``bot.queue``) and the homeserver, each as the process it runs in would.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, TextIO

from bot.core import doctor
from bot.core.config import Config
from bot.core.doctor import Finding
from bot.core.whereabouts import wrong_swarm
from bot.queue.clients import reachable, sync_client
from bot.queue.keys import Keys
from bot.queue.swarmstore import SwarmStore


def run(config: Config, out: TextIO = sys.stdout) -> int:
    findings = [_redis(config), *_docker(config), doctor.ipvs()]
    findings += doctor.chat_reachable(config.source)
    findings += _notice_rooms(config)
    if config.alerts is not None and config.alerts.api_url:
        findings.append(
            doctor.reachable(
                "alertmanager",
                config.alerts.api_url + "/-/ready",
                "check alerts.alertmanager_url, and that the bot's network reaches it",
            )
        )
    for finding in findings:
        print(finding.line(), file=out)
    return 0 if all(f.ok for f in findings) else 1


def _redis(config: Config) -> Finding:
    problem = reachable(sync_client(config.redis_url))
    fix = "check redis.url / $SWARMBOT_REDIS_URL, and that the redis service runs"
    return Finding("redis", not problem, problem or "reachable", fix)


def _docker(config: Config) -> list[Finding]:
    """Only where a worker would run: the bot's container has no Docker socket, by design."""
    from bot.swarm.engine import Swarm  # only here: the bot's image path needs no docker

    try:
        where = Swarm.from_env(timeout=5).whereabouts(config.swarm_name)
    except Exception as exc:
        if config.adapters and (config.matrix or config.slack):
            return [Finding("docker", True, "no Docker socket here (the bot needs none)")]
        return [doctor.docker(None, error=str(exc))]
    serving = config.swarm_id or (
        SwarmStore(
            sync_client(config.redis_url),
            Keys(config.redis_prefix, config.swarm),
            config.signing_secret,
        ).accepted()
        or ""
    )
    wrong = wrong_swarm(serving, where) if serving and where.swarm_id != serving else ""
    return [doctor.docker(where, wrong)]


def _notice_rooms(config: Config) -> list[Finding]:
    """In the bot's container, with a Matrix token: is the bot in every notices room?"""
    if config.matrix is None or config.matrix.access_token is None:
        return []
    base = config.matrix.homeserver
    token = config.matrix.access_token.reveal().decode()
    try:
        joined = {
            str(r) for r in _get(base, "/_matrix/client/v3/joined_rooms", token)["joined_rooms"]
        }
    except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
        return [Finding("notice rooms", False, f"cannot ask the homeserver: {exc}", "")]
    out = []
    rooms = {r for route in config.notice_routes for r in route.matrix}
    if config.alerts is not None:
        rooms |= {
            r for route in (*config.alerts.routes, config.alerts.default) for r in route.matrix
        }
    for room in sorted(rooms):
        room_id = room
        if room.startswith("#"):
            try:
                path = "/_matrix/client/v3/directory/room/" + urllib.parse.quote(room)
                room_id = str(_get(base, path, token)["room_id"])
            except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
                out.append(Finding("notice rooms", False, f"{room}: not resolved: {exc}", ""))
                continue
        fix = f"invite {config.matrix.user_id} to {room}"
        ok = room_id in joined
        out.append(Finding("notice rooms", ok, f"{room}: {'joined' if ok else 'not joined'}", fix))
    return out


def _get(base: str, path: str, token: str) -> dict[str, Any]:
    # The homeserver URL is config's, checked to be http(s) (bot/core/config/chat.py).
    request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=doctor.HTTP_TIMEOUT) as resp:  # noqa: S310
        value = json.loads(resp.read().decode())
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value
