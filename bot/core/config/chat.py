"""The chat sections: [matrix], [slack] and the notice routes ([[notices.route]]), with the
check that a notice room is one the bot serves.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bot.core.config.model import (
    AlertRoute,
    Config,
    MatrixConfig,
    NoticeRoute,
    Problems,
    Secret,
    SlackConfig,
)
from bot.core.config.names import ROOM
from bot.core.config.secrets import find_secret


def matrix(
    table: dict[str, Any], environ: Any, base: Path, all_problems: Problems
) -> MatrixConfig | None:
    """The Matrix adapter's settings; called only when the adapter is enabled."""
    problems: Problems = []
    if not table.get("homeserver") or not re.match(r"^https?://", table["homeserver"]):
        problems.append(("matrix.homeserver", "must be the homeserver's URL, https://..."))
    user_id = table.get("user_id") or ""
    if not re.match(r"^@[a-z0-9._=/+-]+:[A-Za-z0-9.:-]+$", user_id):
        problems.append(("matrix.user_id", "must be the bot's full Matrix ID, @bot:example.org"))
    token = find_secret("matrix", "access_token", table, environ, base, problems)
    password = None if token else find_secret("matrix", "password", table, environ, base, problems)
    if token is None and password is None:
        problems.append(
            (
                "matrix.access_token_file",
                "no credentials: set an access token ($SWARMBOT_MATRIX_ACCESS_TOKEN, "
                "access_token_file or access_token) or a password (the same forms)",
            )
        )
    rooms = table.get("rooms", [])
    for i, room in enumerate(rooms):
        if not isinstance(room, str) or not ROOM.match(room):
            problems.append(
                (f"matrix.rooms[{i}]", "must be a room ID (!id:server) or alias (#name:server)")
            )
    if not rooms:
        problems.append(("matrix.rooms", "list the rooms the bot serves; it ignores all others"))
    if not 10 <= table.get("max_command_age_seconds", 600) <= 86400:
        problems.append(("matrix.max_command_age_seconds", "must be between 10 and 86400"))
    if problems:
        all_problems.extend(problems)
        return None
    return MatrixConfig(
        homeserver=table["homeserver"].rstrip("/"),
        user_id=user_id,
        device_id=table.get("device_id") or "SWARMBOT",
        access_token=Secret(token[0].encode()) if token else None,
        password=Secret(password[0].encode()) if password else None,
        rooms=tuple(rooms),
        threads=table.get("threads", True),
        max_command_age_seconds=table.get("max_command_age_seconds", 600),
    )


def slack(
    table: dict[str, Any], environ: Any, base: Path, all_problems: Problems
) -> SlackConfig | None:
    """The Slack adapter's settings; called only when the adapter is enabled."""
    problems: Problems = []
    mode = table["mode"]
    if mode not in ("socket", "http"):
        problems.append(("slack.mode", "must be socket or http"))
    found = {
        key: find_secret("slack", key, table, environ, base, problems)
        for key in ("bot_token", "app_token", "signing_secret")
    }
    _check_tokens(mode, found, problems)
    _check_channels(table["channels"], problems)
    if not re.match(r"^/[a-z0-9_-]{1,31}$", table["slash_command"]):
        problems.append(("slack.slash_command", "must look like /swarm"))
    if not 1 <= table["http_port"] <= 65535:
        problems.append(("slack.http_port", "must be a TCP port"))
    if not re.match(r"^https?://.+/$", table["api_url"]):
        problems.append(("slack.api_url", "must be an http(s) URL ending in /"))
    if problems:
        all_problems.extend(problems)
        return None

    def secret(key: str) -> Secret | None:
        value = found[key]
        return Secret(value[0].encode()) if value else None

    return SlackConfig(
        mode=mode,
        bot_token=secret("bot_token"),  # type: ignore[arg-type]
        app_token=secret("app_token"),
        signing_secret=secret("signing_secret"),
        channels=tuple(table["channels"]),
        slash_command=table["slash_command"],
        http_host=table["http_host"],
        http_port=table["http_port"],
        http_path=table["http_path"],
        api_url=table["api_url"],
    )


def _check_tokens(mode: str, found: dict[str, tuple[str, str] | None], problems: Problems) -> None:
    """Socket mode needs the bot and app tokens, http mode the bot token and the signing
    secret; a token of the wrong kind is named by where it came from."""
    needed = (
        {"bot_token": "xoxb-", "app_token": "xapp-"}
        if mode == "socket"
        else {"bot_token": "xoxb-"}
    )
    for key, start in needed.items():
        value = found[key]
        if value is None:
            problems.append(
                (
                    f"slack.{key}_file",
                    f"no {key} ({start}…): set $SWARMBOT_SLACK_{key.upper()}, {key}_file or {key}",
                )
            )
        elif not value[0].startswith(start):
            problems.append((value[1], f"a Slack {key} starts with {start}"))
    if mode == "http" and found["signing_secret"] is None:
        problems.append(("slack.signing_secret_file", "http mode needs the app's signing secret"))


def _check_channels(channels: list[Any], problems: Problems) -> None:
    if not channels:
        problems.append(
            ("slack.channels", "list the channel IDs the bot serves; it ignores all others")
        )
    for i, channel in enumerate(channels):
        if not isinstance(channel, str) or not re.match(r"^[CG][A-Z0-9]{2,32}$", channel):
            problems.append(
                (f"slack.channels[{i}]", "must be a channel ID such as C0123ABCD (not a #name)")
            )


def notice_routes(notices: dict[str, Any], problems: Problems) -> tuple[NoticeRoute, ...]:
    routes = []
    for i, route in enumerate(notices["route"]):
        key = f"notices.route[{i}]"
        if not isinstance(route, dict):
            problems.append((key, "must be a table with stacks, matrix and/or slack"))
            continue
        for extra in set(route) - {"stacks", "matrix", "slack"}:
            problems.append((f"{key}.{extra}", "unknown key (known: matrix, slack, stacks)"))
        parts = {}
        for part in ("stacks", "matrix", "slack"):
            value = route.get(part, ["*"] if part == "stacks" else [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                problems.append((f"{key}.{part}", "must be a list of strings"))
                value = []
            parts[part] = tuple(value)
        check_places(key, parts["matrix"], parts["slack"], problems)
        routes.append(NoticeRoute(parts["stacks"], parts["matrix"], parts["slack"]))
    if not 0.5 <= notices["quiet_seconds"] <= 300:
        problems.append(("notices.quiet_seconds", "must be between 0.5 and 300"))
    if not 2 <= notices["poll_seconds"] <= 3600:
        problems.append(("notices.poll_seconds", "must be between 2 and 3600"))
    return tuple(routes)


def check_places(
    key: str, rooms: tuple[str, ...], channels: tuple[str, ...], problems: Problems
) -> None:
    """A route's Matrix rooms are IDs or aliases, its Slack channels are channel IDs."""
    for j, room in enumerate(rooms):
        if not ROOM.match(room):
            problems.append(
                (f"{key}.matrix[{j}]", "must be a room ID (!id) or alias (#name:server)")
            )
    for j, channel in enumerate(channels):
        if not re.match(r"^[CG][A-Z0-9]{2,32}$", channel):
            problems.append((f"{key}.slack[{j}]", "must be a channel ID such as C0123ABCD"))


def check_notice_rooms(
    routes: Sequence[NoticeRoute | AlertRoute],
    matrix: MatrixConfig | None,
    slack: SlackConfig | None,
    problems: Problems,
    keys: Sequence[str] = (),
) -> None:
    """A notice can be posted only where the bot is: its room must be one the bot serves
    (the bot rejects invites to any other room). Aliases in ``matrix.rooms`` are resolved
    at start-up, which checks those again (``notice_rooms_unserved``)."""
    served: dict[str, tuple[str, ...]] = {}  # platform -> what the bot serves there
    if matrix is not None and not any(r.startswith("#") for r in matrix.rooms):
        served["matrix"] = matrix.rooms
    if slack is not None:
        served["slack"] = slack.channels
    where = {"matrix": "matrix.rooms", "slack": "slack.channels"}
    for i, route in enumerate(routes):
        key = keys[i] if keys else f"notices.route[{i}]"
        for platform, places in served.items():
            for j, place in enumerate(getattr(route, platform)):
                if place not in places and not place.startswith("#"):  # aliases: at start
                    problems.append(
                        (
                            f"{key}.{platform}[{j}]",
                            f"{place} is not in {where[platform]}: the bot posts only where "
                            "it serves (and is invited); add it there",
                        )
                    )


def notice_rooms_unserved(
    config: Config, served: set[str], aliases: Mapping[str, str] | None = None
) -> list[str]:
    """The config keys of notice rooms outside ``served`` (the Matrix room IDs the bot
    serves once its aliases are resolved; ``aliases`` maps those resolved), each with the
    room."""
    resolved = aliases or {}
    places: list[tuple[str, NoticeRoute | AlertRoute]] = [
        (f"notices.route[{i}]", r) for i, r in enumerate(config.notice_routes)
    ]
    if config.alerts is not None:
        places += [(f"alerts.route[{i}]", r) for i, r in enumerate(config.alerts.routes)]
        places.append(("alerts", config.alerts.default))
    return [
        f"{key}.matrix[{j}] = {room}"
        for key, route in places
        for j, room in enumerate(route.matrix)
        if resolved.get(room, room) not in served
    ]
