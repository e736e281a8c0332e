"""Reading the file and assembling a ``Config``: every problem is collected, with its key
path, before one ``ConfigError`` names them all.

``parse`` only assembles: each section's rules live in the module for that section, every
default in ``defaults.SCHEMA``.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Collection
from pathlib import Path
from typing import Any

from bot.core.config import access, alerts, sources, swarms, timing
from bot.core.config import chat as chat_sections
from bot.core.config.defaults import ADAPTERS, RESOLVE_IMAGE_MODES, SCHEMA
from bot.core.config.model import Config, ConfigError, Problems
from bot.core.config.names import DEFAULT_CONFIG_ENV, REDIS_URL_ENV
from bot.core.config.secrets import signing_secret
from bot.core.ids import STACK_NAME

Tables = dict[str, dict[str, Any]]
# Redis through Sentinel: the sentinels, the master's name, a database (bot/queue/clients.py).
SENTINEL_URL = re.compile(
    r"^redis\+sentinel://([^@/\s]*@)?[^@/,:\s]+:[0-9]+(,[^@/,:\s]+:[0-9]+)*"
    r"/[A-Za-z0-9._-]+(/[0-9]+)?$"
)

# (section, key, low, high): the numeric keys whose only rule is a range.
_RANGES = (
    ("queue", "job_ttl_seconds", 10, 86400),
    ("queue", "worker_concurrency", 1, 64),
    ("queue", "worker_timeout_seconds", 3, 300),
    ("queue", "read_slots", 0, 16),
    ("deploy", "cli_timeout_seconds", 1, 3600),
    ("deploy", "deadline_seconds", 1, 3600),
    ("deploy", "max_stack_file_bytes", 1024, 64 * 1024 * 1024),
    ("safety", "refusals_per_minute", 1, 10_000),
    ("redis", "min_replicas", 0, 5),
    ("redis", "replica_wait_ms", 10, 60_000),
)


def load(
    path: str | os.PathLike[str] | None = None,
    chat: bool = True,
    *,
    commands: Collection[str],
) -> Config:
    """Read and validate the config file named by ``path`` or ``$SWARMBOT_CONFIG``.

    ``chat=False`` (the worker) leaves the [matrix] and [slack] sections alone: the worker
    never talks to a chat platform, so it is given none of their credentials.
    ``commands``: the command names roles and confirmations may name (the composition
    root passes the registry: the core does not know the commands, they build on it)."""
    if path is None:
        path = os.environ.get(DEFAULT_CONFIG_ENV)
    if not path:
        raise ConfigError(
            [("--config", f"no config file given (use --config or ${DEFAULT_CONFIG_ENV})")]
        )
    file = Path(path)
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([("--config", f"{file}: no such file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([("--config", f"{file}: cannot read: {exc}")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([("--config", f"{file}: not valid TOML: {exc}")]) from None
    return parse(raw, source=file, environ=os.environ, chat=chat, commands=commands)


def parse(
    raw: dict[str, Any],
    source: Path | None,
    environ: dict[str, str] | os._Environ[str],
    chat: bool = True,
    *,
    commands: Collection[str],
) -> Config:
    """Validate a parsed TOML document; collects every problem before raising."""
    problems: Problems = []
    values = tables(raw, problems)
    base = source.parent if source else Path.cwd()
    redis_url = environ.get(REDIS_URL_ENV) or values["redis"]["url"]
    _check_plain(values, redis_url, bool(environ.get(REDIS_URL_ENV)), problems)
    _check_swarm(values["swarm"], problems)
    secret = signing_secret(values["security"], environ, base, problems)
    variables = access.variables(raw.get("variables", {}), problems)
    _check_public(values["security"]["public_variables"], variables, problems)
    roles = access.roles(raw.get("roles", {}), problems, commands)
    swarm_list = swarms.swarms(
        raw.get("swarms"), values["bot"]["stacks_dir"], variables, base, problems
    )
    access.check_role_swarms(roles, tuple(s.name for s in swarm_list), problems)
    access.check_safety(values["safety"], problems, commands)
    routes = chat_sections.notice_routes(values["notices"], problems)
    adapters = _adapters(values["bot"]["adapters"], problems)
    on = set(adapters) if chat else set()
    matrix = (
        chat_sections.matrix(values["matrix"], environ, base, problems) if "matrix" in on else None
    )
    slack = (
        chat_sections.slack(values["slack"], environ, base, problems) if "slack" in on else None
    )
    alert_section = alerts.alerts(values["alerts"], environ, base, problems)
    zone, window_rules = timing.windows(raw.get("windows"), problems)
    swarms.check(swarm_list, values["swarm"], window_rules, problems)
    if chat:
        chat_sections.check_notice_rooms(routes, matrix, slack, problems)
        if alert_section is not None:
            places = (*alert_section.routes, alert_section.default)
            keys = [f"alerts.route[{i}]" for i in range(len(alert_section.routes))] + ["alerts"]
            chat_sections.check_notice_rooms(places, matrix, slack, problems, keys)
    git = sources.git(values["git"], environ, base, problems)
    changes = sources.changes(values["changes"], problems)
    webhook = sources.webhook(values["webhook"], environ, base, problems, git)
    registry = sources.registry(values["registry"], base, problems)
    if problems or secret is None:
        raise ConfigError(problems)
    bot, queue, deploy, safety, security, health, notices = (
        values[s] for s in ("bot", "queue", "deploy", "safety", "security", "health", "notices")
    )
    return Config(
        source=source,
        prefix=bot["prefix"],
        stacks_dir=(base / bot["stacks_dir"]).resolve(),  # checked by the worker
        redis_url=redis_url,
        redis_prefix=values["redis"]["prefix"],
        # Only through Sentinel: a plain Redis has no replica to wait for.
        redis_replicas=(
            values["redis"]["min_replicas"] if redis_url.startswith("redis+sentinel://") else 0
        ),
        redis_wait_ms=values["redis"]["replica_wait_ms"],
        signing_secret=secret,
        job_ttl_seconds=queue["job_ttl_seconds"],
        worker_concurrency=queue["worker_concurrency"],
        worker_timeout_seconds=queue["worker_timeout_seconds"],
        deploy_deadline_seconds=float(deploy["deadline_seconds"]),
        deploy_first=tuple(deploy["first"]),
        resolve_image=deploy["resolve_image"],
        docker_cli=deploy["docker_cli"],
        docker_cli_timeout=float(deploy["cli_timeout_seconds"]),
        variables=variables,
        roles=roles + sources.automation_role(changes),
        adapters=adapters,
        public_variables=frozenset(str(n) for n in security["public_variables"]),
        worker_state_dir=(base / queue["state_dir"]).resolve(),
        confirm=frozenset(safety["confirm"]),
        confirm_seconds=safety["confirm_seconds"],
        second_approver_stacks=tuple(safety["second_approver_stacks"]),
        rate_limit_per_minute=safety["rate_limit_per_minute"],
        refusals_per_minute=safety["refusals_per_minute"],
        max_stack_file_bytes=deploy["max_stack_file_bytes"],
        host_access_stacks=tuple(str(g) for g in security["host_access_stacks"]),
        read_slots=queue["read_slots"],
        swarm_id=values["swarm"]["id"],
        swarm_name=values["swarm"]["name"],
        health_host=health["host"],
        health_bot_port=health["bot_port"],
        health_worker_port=health["worker_port"],
        notice_routes=routes,
        notice_quiet_seconds=float(notices["quiet_seconds"]),
        notice_poll_seconds=float(notices["poll_seconds"]),
        matrix=matrix,
        slack=slack,
        git=git,
        webhook=webhook,
        alerts=alert_section,
        timezone=zone,
        windows=window_rules,
        registry=registry,
        changes=changes,
        swarms=swarm_list,
    )


def tables(raw: dict[str, Any], problems: Problems) -> Tables:
    """Each section of ``SCHEMA`` with its defaults filled in; unknown sections and keys and
    values of the wrong type are problems (the default stands in for a wrong value)."""
    known = set(SCHEMA) | {"roles", "variables", "windows", "swarms"}
    for key in raw:
        if key not in known:
            problems.append((key, f"unknown section (known: {', '.join(sorted(known))})"))
    values: Tables = {}
    for section, keys in SCHEMA.items():
        table = raw.get(section, {})
        if not isinstance(table, dict):
            problems.append((section, "must be a table"))
            table = {}
        for key in table:
            if key not in keys:
                problems.append(
                    (f"{section}.{key}", f"unknown key (known: {', '.join(sorted(keys))})")
                )
        values[section] = {}
        for key, (typ, default) in keys.items():
            value = table.get(key, default)
            wrong_bool = isinstance(value, bool) and typ is not bool
            if value is not None and (wrong_bool or not isinstance(value, typ)):
                problems.append(
                    (f"{section}.{key}", f"must be {_type_name(typ)}, not {type(value).__name__}")
                )
                value = default
            values[section][key] = value
    return values


def _check_plain(values: Tables, redis_url: str, from_env: bool, problems: Problems) -> None:
    """The keys of [bot], [redis], [queue], [deploy], [security] and [health] that stand
    alone: a shape or a range each."""
    prefix = values["bot"]["prefix"]
    if (
        not (1 <= len(prefix) <= 3 and prefix.isprintable())
        or prefix.isspace()
        or prefix.isalnum()
    ):
        problems.append(
            ("bot.prefix", "must be 1-3 printable non-alphanumeric characters, such as '!'")
        )
    _check_redis_url(redis_url, REDIS_URL_ENV if from_env else "redis.url", problems)
    if not re.match(r"^[a-z][a-z0-9_-]{0,31}$", values["redis"]["prefix"]):
        problems.append(
            ("redis.prefix", "must be lowercase letters, digits, '-' or '_' (at most 32)")
        )
    for section, key, low, high in _RANGES:
        if not low <= values[section][key] <= high:
            problems.append((f"{section}.{key}", f"must be between {low} and {high}"))
    for i, glob in enumerate(values["security"]["host_access_stacks"]):
        if not isinstance(glob, str) or not glob:
            problems.append((f"security.host_access_stacks[{i}]", "must be a stack name or glob"))
    for i, name in enumerate(values["deploy"]["first"]):
        if not isinstance(name, str) or not STACK_NAME.match(name):
            problems.append((f"deploy.first[{i}]", "must be a stack name"))
    if values["deploy"]["resolve_image"] not in RESOLVE_IMAGE_MODES:
        problems.append(
            ("deploy.resolve_image", f"must be one of {', '.join(RESOLVE_IMAGE_MODES)}")
        )
    for key in ("bot_port", "worker_port"):
        if not 0 <= values["health"][key] <= 65535:
            problems.append((f"health.{key}", "must be a TCP port, or 0 for none"))


def _check_redis_url(url: str, key: str, problems: Problems) -> None:
    if url.startswith("redis+sentinel://"):
        if not SENTINEL_URL.match(url):
            problems.append(
                (key, "must be redis+sentinel://host:port,host:port/<master name>[/<db>]")
            )
    elif not re.match(r"^(redis|rediss|unix)://", url):
        problems.append((key, "must start with redis://, rediss://, unix:// or redis+sentinel://"))


def _check_swarm(swarm: dict[str, Any], problems: Problems) -> None:
    if not re.match(r"^([a-z0-9]{25})?$", swarm["id"]):
        problems.append(("swarm.id", "must be a swarm ID (25 letters and digits) or empty"))
    if not re.match(r"^[A-Za-z0-9 ._-]{0,64}$", swarm["name"]):
        problems.append(("swarm.name", "must be up to 64 letters, digits, spaces, '.', '_', '-'"))


def _check_public(public: list[Any], variables: dict[str, str], problems: Problems) -> None:
    for i, name in enumerate(public):
        if not isinstance(name, str) or name not in variables:
            problems.append((f"security.public_variables[{i}]", "must name a [variables] key"))


def _adapters(names: list[Any], problems: Problems) -> tuple[str, ...]:
    for i, name in enumerate(names):
        if name not in ADAPTERS:
            problems.append(
                (f"bot.adapters[{i}]", f"unknown adapter {name!r} (known: {', '.join(ADAPTERS)})")
            )
    return tuple(names)


def _type_name(typ: type | tuple[type, ...]) -> str:
    names = {
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
    }
    if isinstance(typ, tuple):
        return names.get(typ[-1], typ[-1].__name__)
    return names.get(typ, typ.__name__)
