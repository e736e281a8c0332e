"""The [swarms] section: several swarms served from the same rooms, one worker each.

    [swarms.prod]
    id = "k3v0bq6n0tq8rc0x7ahk3xhsa"
    docker_host = "unix:///var/run/docker.sock"
    rooms = ["#ops:example.org"]

    [swarms.staging]
    docker_host = "ssh://deploy@staging-manager"
    stacks_dir = "stacks-staging"
    variables = { DOMAIN = "staging.example.org" }

Without the section the bot serves one swarm, named nowhere, as it always did; with it,
each swarm has a name that commands use (``!deploy prod:dev``) and its worker is started
with ``swarmbot worker --swarm prod``."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from bot.core.config import access
from bot.core.config.model import Config, ConfigError, Problems, SwarmConfig
from bot.core.config.names import ROOM
from bot.core.windows import WindowRule

SWARM_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
SWARM_KEYS = {"id", "docker_host", "stacks_dir", "variables", "rooms"}
SWARM_ID = re.compile(r"^([a-z0-9]{25})?$")
SLACK_CHANNEL = re.compile(r"^[CGD][A-Z0-9]{2,31}$")


def swarms(
    raw: Any, stacks_dir: str, variables: dict[str, str], base: Path, problems: Problems
) -> tuple[SwarmConfig, ...]:
    """Each ``[swarms.<name>]``, in file order; every problem names its key."""
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        problems.append(("swarms", "must be a table of swarms: [swarms.prod], [swarms.staging]"))
        return ()
    found: list[SwarmConfig] = []
    for name, table in raw.items():
        key = f"swarms.{name}"
        if not SWARM_NAME.match(name):
            problems.append((key, "a swarm's name is lowercase letters, digits and '-' (32)"))
            continue
        if not isinstance(table, dict):
            problems.append((key, "must be a table"))
            continue
        for extra in sorted(set(table) - SWARM_KEYS):
            problems.append(
                (f"{key}.{extra}", f"unknown key (known: {', '.join(sorted(SWARM_KEYS))})")
            )
        found.append(_swarm(name, key, table, stacks_dir, variables, base, problems))
    if raw and not found:
        problems.append(("swarms", "names no usable swarm"))
    return tuple(found)


def _swarm(
    name: str,
    key: str,
    table: dict[str, Any],
    stacks_dir: str,
    variables: dict[str, str],
    base: Path,
    problems: Problems,
) -> SwarmConfig:
    texts = {}
    for part in ("id", "docker_host", "stacks_dir"):
        value = table.get(part, "")
        if not isinstance(value, str):
            problems.append((f"{key}.{part}", "must be a string"))
            value = ""
        texts[part] = value
    if not SWARM_ID.match(texts["id"]):
        problems.append((f"{key}.id", "must be a swarm ID (25 letters and digits) or empty"))
    host = texts["docker_host"]
    if host and not re.match(r"^(unix|tcp|ssh|npipe)://\S+$", host):
        problems.append((f"{key}.docker_host", "must be a unix://, tcp:// or ssh:// address"))
    own = access.variables(table.get("variables", {}), problems, f"{key}.variables")
    rooms = table.get("rooms", [])
    if not isinstance(rooms, list) or not all(isinstance(r, str) for r in rooms):
        problems.append((f"{key}.rooms", "must be a list of room IDs, aliases or channel IDs"))
        rooms = []
    for i, room in enumerate(rooms):
        if not (ROOM.match(room) or SLACK_CHANNEL.match(room) or room == "console"):
            problems.append(
                (f"{key}.rooms[{i}]", f"{room!r} is not a Matrix room or a Slack channel ID")
            )
    return SwarmConfig(
        name=name,
        id=texts["id"],
        docker_host=host,
        stacks_dir=(base / (texts["stacks_dir"] or stacks_dir)).resolve(),
        variables={**variables, **own},
        rooms=tuple(rooms),
    )


def check(
    config_swarms: tuple[SwarmConfig, ...],
    plain: dict[str, Any],
    windows: tuple[WindowRule, ...],
    problems: Problems,
) -> None:
    """[swarm] names one swarm's ID; with [swarms], each swarm says its own. A window for
    one swarm ("prod:*") names a swarm there is."""
    if config_swarms and (plain["id"] or plain["name"]):
        problems.append(("swarm", "with [swarms], give each swarm its id in [swarms.<name>]"))
    names = {s.name for s in config_swarms}
    for rule in windows:
        named, colon, _ = rule.glob.partition(":")
        if colon and named not in names:
            known = ", ".join(sorted(names)) or "none: the config has no [swarms]"
            problems.append((f'windows."{rule.glob}"', f"unknown swarm {named!r} ({known})"))
    seen: dict[str, str] = {}
    for swarm in config_swarms:
        for room in swarm.rooms:
            if room in seen:
                problems.append(
                    (f"swarms.{swarm.name}.rooms", f"{room} is already the room of {seen[room]}")
                )
            seen[room] = swarm.name


def on_swarm(config: Config, name: str | None) -> Config:
    """The config as the worker of swarm ``name`` uses it: that swarm's ID, daemon, stack
    files and variables, and only the roles that hold on it (the worker checks rights
    again). ``None``: the only swarm there is (none named, or one in [swarms])."""
    if not config.swarms:
        if name:
            raise ConfigError([("--swarm", f"no [swarms.{name}] in the config (it has none)")])
        return config
    if name is None:
        if len(config.swarms) > 1:
            names = ", ".join(config.swarm_names)
            raise ConfigError([("--swarm", f"the config has several swarms; name one: {names}")])
        name = config.swarms[0].name
    swarm = next((s for s in config.swarms if s.name == name), None)
    if swarm is None:
        names = ", ".join(config.swarm_names)
        raise ConfigError([("--swarm", f"no swarm {name!r} in the config (it has {names})")])
    return dataclasses.replace(
        config,
        swarm=swarm.name,
        swarm_id=swarm.id,
        swarm_name=swarm.name,
        docker_host=swarm.docker_host,
        stacks_dir=swarm.stacks_dir,
        variables=swarm.variables,
        roles=tuple(r for r in config.roles if r.covers(swarm.name)),
        windows=windows_on(config.windows, swarm.name),
    )


def windows_on(rules: tuple[WindowRule, ...], swarm: str) -> tuple[WindowRule, ...]:
    """The window rules as ``swarm`` reads them, in their order: its own ("prod:dev*" as
    "dev*"), and those for every swarm; other swarms' left out."""
    kept = []
    for rule in rules:
        name, colon, glob = rule.glob.partition(":")
        if not colon:
            kept.append(rule)
        elif name == swarm:
            kept.append(dataclasses.replace(rule, glob=glob))
    return tuple(kept)
