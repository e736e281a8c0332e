"""The [alerts] section: Alertmanager's receiver, its routes to rooms, and its API."""

from __future__ import annotations

import re
from typing import Any

from bot.core.alerting.matchers import BadMatchers, Matcher, parse
from bot.core.config.chat import check_places
from bot.core.config.model import AlertRoute, AlertsConfig, Problems, Secret
from bot.core.config.secrets import find_secret

MIN_TOKEN = 16
LABEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")


def alerts(
    table: dict[str, Any], environ: Any, base: Any, problems: Problems
) -> AlertsConfig | None:
    """None when neither a receiver (``port``) nor the API (``alertmanager_url``) is set."""
    if not table["port"] and not table["alertmanager_url"]:
        return None
    if table["port"] and not 1 <= table["port"] <= 65535:
        problems.append(("alerts.port", "must be a TCP port, or 0 for no receiver"))
    if not re.match(r"^/[A-Za-z0-9._/-]{0,100}$", table["path"]):
        problems.append(("alerts.path", "must be a URL path such as /hooks/alertmanager"))
    url = table["alertmanager_url"]
    if url and not re.match(r"^https?://[A-Za-z0-9.:\[\]-]+(/[A-Za-z0-9._/-]*)?$", url):
        problems.append(
            ("alerts.alertmanager_url", "must be a URL such as http://alertmanager:9093")
        )
    token, password = _credentials(table, environ, base, problems)
    routes = tuple(_route(i, r, problems) for i, r in enumerate(table["route"]))
    default = _rooms("alerts", table, problems, ())
    if table["port"] and not default.matrix and not default.slack and not routes:
        problems.append(
            ("alerts.matrix", "say where alerts go: alerts.matrix, alerts.slack or a route")
        )
    for key in ("service_labels", "stack_labels"):
        if not all(isinstance(v, str) and LABEL.match(v) for v in table[key]):
            problems.append((f"alerts.{key}", "must be a list of label names"))
    _bounds(table, problems)
    return AlertsConfig(
        host=table["host"],
        port=table["port"],
        path=table["path"],
        token=token,
        username=table["username"],
        password=password,
        api_url=url.rstrip("/"),
        routes=tuple(r for r in routes if r is not None),
        default=default,
        service_labels=tuple(table["service_labels"]),
        stack_labels=tuple(table["stack_labels"]),
        confirm_silence_over_seconds=table["confirm_silence_over_seconds"],
        max_silence_seconds=table["max_silence_seconds"],
        new_messages_per_minute=table["new_messages_per_minute"],
        flap_seconds=table["flap_seconds"],
    )


def _credentials(
    table: dict[str, Any], environ: Any, base: Any, problems: Problems
) -> tuple[Secret | None, Secret | None]:
    """A bearer token, or a user name and password: what Alertmanager's http_config sends.
    A receiver without either is refused: it would take alerts from anyone who can reach it."""
    token = find_secret("alerts", "token", table, environ, base, problems)
    password = find_secret("alerts", "password", table, environ, base, problems)
    if token is not None and len(token[0]) < MIN_TOKEN:
        problems.append((token[1], f"the alerts token must be at least {MIN_TOKEN} characters"))
    if password is not None and len(password[0]) < MIN_TOKEN:
        problems.append(
            (password[1], f"the alerts password must be at least {MIN_TOKEN} characters")
        )
    if password is not None and not table["username"]:
        problems.append(("alerts.username", "a password needs a username (basic auth)"))
    if table["port"] and token is None and password is None:
        problems.append(
            (
                "alerts.token_file",
                "the receiver needs a bearer token (alerts.token_file) or basic auth "
                "(alerts.username and alerts.password_file), as Alertmanager's http_config sends",
            )
        )
    return (
        Secret(token[0].encode()) if token else None,
        Secret(password[0].encode()) if password else None,
    )


def _route(i: int, raw: Any, problems: Problems) -> AlertRoute | None:
    key = f"alerts.route[{i}]"
    if not isinstance(raw, dict):
        problems.append((key, "must be a table with match, matrix and/or slack"))
        return None
    for extra in set(raw) - {"match", "matrix", "slack"}:
        problems.append((f"{key}.{extra}", "unknown key (known: match, matrix, slack)"))
    match = raw.get("match", [])
    match = [match] if isinstance(match, str) else match
    matchers: list[Matcher] = []
    if not isinstance(match, list) or not match or not all(isinstance(m, str) for m in match):
        problems.append((f"{key}.match", "must be matchers such as 'severity=\"critical\"'"))
    else:
        for j, text in enumerate(match):
            try:
                matchers += parse(text)
            except BadMatchers as exc:
                problems.append((f"{key}.match[{j}]", str(exc)))
    route = _rooms(key, raw, problems, tuple(matchers))
    if not route.matrix and not route.slack:
        problems.append((key, "names no room: add matrix or slack"))
    return route


def _rooms(
    key: str, raw: dict[str, Any], problems: Problems, matchers: tuple[Matcher, ...]
) -> AlertRoute:
    parts: dict[str, tuple[str, ...]] = {}
    for part in ("matrix", "slack"):
        value = raw.get(part, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            problems.append((f"{key}.{part}", "must be a list of strings"))
            value = []
        parts[part] = tuple(value)
    check_places(key, parts["matrix"], parts["slack"], problems)
    return AlertRoute(matchers, parts["matrix"], parts["slack"])


def _bounds(table: dict[str, Any], problems: Problems) -> None:
    for name, low, high in (
        ("confirm_silence_over_seconds", 60, 365 * 86400),
        ("max_silence_seconds", 60, 365 * 86400),
        ("new_messages_per_minute", 1, 600),
        ("flap_seconds", 0, 7 * 86400),
    ):
        if not low <= table[name] <= high:
            problems.append((f"alerts.{name}", f"must be between {low} and {high}"))
