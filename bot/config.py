"""Configuration: one TOML file, validated up front with exact key paths in every error.

Operators edit this file by hand, usually in a hurry, so every problem names the key
(``roles.ops.stacks[1]``) and what is wrong with it, and unknown keys are errors: a typo
such as ``user = [...]`` for ``users`` must not silently leave a role empty.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.names import STACK_NAME

DEFAULT_CONFIG_ENV = "SWARMBOT_CONFIG"
REDIS_URL_ENV = "SWARMBOT_REDIS_URL"
SIGNING_SECRET_ENV = "SWARMBOT_SIGNING_SECRET"  # noqa: S105 (a variable name)
SIGNING_SECRET_FILE_ENV = "SWARMBOT_SIGNING_SECRET_FILE"  # noqa: S105
MIN_SECRET_LENGTH = 32

USER_ID = re.compile(
    r"^(console:[A-Za-z0-9._-]{1,64}|@[a-z0-9._=/+-]{1,255}:[A-Za-z0-9.:-]{1,255}|slack:[A-Z0-9]{2,32})$"
)
VARIABLE_NAME = re.compile(r"^[A-Z_][A-Z0-9_]{0,63}$")
RESOLVE_IMAGE_MODES = ("always", "changed", "never")


class ConfigError(Exception):
    """A config that cannot be used; ``problems`` holds (key, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{key}: {msg}" for key, msg in problems))


class Secret:
    """A secret value that never prints itself: repr, str and f-strings show ``***``."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        self._value = value

    def reveal(self) -> bytes:
        return self._value

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__


@dataclass(frozen=True)
class Role:
    """A named set of users and what they may do: commands, and stacks (as globs)."""

    name: str
    users: frozenset[str]
    commands: frozenset[str]
    stacks: tuple[str, ...]


@dataclass(frozen=True)
class Config:
    source: Path | None
    prefix: str
    stacks_dir: Path
    redis_url: str
    redis_prefix: str
    signing_secret: Secret = field(repr=False)
    job_ttl_seconds: int
    worker_concurrency: int
    deploy_deadline_seconds: float
    deploy_first: tuple[str, ...]
    resolve_image: str
    docker_cli: str
    variables: dict[str, str]
    roles: tuple[Role, ...]


# The schema: key -> (type, default). A default of ``REQUIRED`` makes the key mandatory.
REQUIRED = object()
_SCHEMA: dict[str, dict[str, tuple[type | tuple[type, ...], Any]]] = {
    "bot": {
        "prefix": (str, "!"),
        "stacks_dir": (str, "stacks"),
    },
    "redis": {
        "url": (str, "redis://127.0.0.1:6379/0"),
        "prefix": (str, "swarmbot"),
    },
    "security": {
        "signing_secret": (str, None),
        "signing_secret_file": (str, None),
    },
    "queue": {
        "job_ttl_seconds": (int, 600),
        "worker_concurrency": (int, 4),
    },
    "deploy": {
        "deadline_seconds": ((int, float), 300),
        "first": (list, ["ingress", "support"]),
        "resolve_image": (str, "always"),
        "docker_cli": (str, "docker"),
    },
}
_ROLE_KEYS = {"users", "commands", "stacks"}


def load(path: str | os.PathLike[str] | None = None) -> Config:
    """Read and validate the config file named by ``path`` or ``$SWARMBOT_CONFIG``."""
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
    return parse(raw, source=file, environ=os.environ)


def parse(
    raw: dict[str, Any], source: Path | None, environ: dict[str, str] | os._Environ[str]
) -> Config:
    """Validate a parsed TOML document; collects every problem before raising."""
    problems: list[tuple[str, str]] = []
    known = set(_SCHEMA) | {"roles", "variables"}
    for key in raw:
        if key not in known:
            problems.append((key, f"unknown section (known: {', '.join(sorted(known))})"))

    values: dict[str, dict[str, Any]] = {}
    for section, keys in _SCHEMA.items():
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
            if value is not None and (isinstance(value, bool) or not isinstance(value, typ)):
                problems.append(
                    (f"{section}.{key}", f"must be {_type_name(typ)}, not {type(value).__name__}")
                )
                value = default
            values[section][key] = value

    bot, redis_t, security, queue, deploy = (
        values[s] for s in ("bot", "redis", "security", "queue", "deploy")
    )

    prefix = bot["prefix"]
    if (
        not (1 <= len(prefix) <= 3)
        or not prefix.isprintable()
        or prefix.isspace()
        or prefix.isalnum()
    ):
        problems.append(
            ("bot.prefix", "must be 1-3 printable non-alphanumeric characters, such as '!'")
        )

    base = source.parent if source else Path.cwd()
    stacks_dir = (base / bot["stacks_dir"]).resolve()
    if not stacks_dir.is_dir():
        problems.append(("bot.stacks_dir", f"{stacks_dir}: not a directory"))

    redis_url = environ.get(REDIS_URL_ENV) or redis_t["url"]
    if not re.match(r"^(redis|rediss|unix)://", redis_url):
        key = REDIS_URL_ENV if environ.get(REDIS_URL_ENV) else "redis.url"
        problems.append((key, "must start with redis://, rediss:// or unix://"))
    if not re.match(r"^[a-z][a-z0-9_-]{0,31}$", redis_t["prefix"]):
        problems.append(
            ("redis.prefix", "must be lowercase letters, digits, '-' or '_' (at most 32)")
        )

    secret = _signing_secret(security, environ, base, problems)

    for key, low, high in (("job_ttl_seconds", 10, 86400), ("worker_concurrency", 1, 64)):
        if not low <= queue[key] <= high:
            problems.append((f"queue.{key}", f"must be between {low} and {high}"))
    if not 1 <= deploy["deadline_seconds"] <= 3600:
        problems.append(("deploy.deadline_seconds", "must be between 1 and 3600"))
    first = deploy["first"]
    for i, name in enumerate(first):
        if not isinstance(name, str) or not STACK_NAME.match(name):
            problems.append((f"deploy.first[{i}]", "must be a stack name"))
    if deploy["resolve_image"] not in RESOLVE_IMAGE_MODES:
        problems.append(
            ("deploy.resolve_image", f"must be one of {', '.join(RESOLVE_IMAGE_MODES)}")
        )

    variables = _variables(raw.get("variables", {}), problems)
    roles = _roles(raw.get("roles", {}), problems)

    if problems:
        raise ConfigError(problems)
    return Config(
        source=source,
        prefix=prefix,
        stacks_dir=stacks_dir,
        redis_url=redis_url,
        redis_prefix=redis_t["prefix"],
        signing_secret=secret,  # type: ignore[arg-type]
        job_ttl_seconds=queue["job_ttl_seconds"],
        worker_concurrency=queue["worker_concurrency"],
        deploy_deadline_seconds=float(deploy["deadline_seconds"]),
        deploy_first=tuple(first),
        resolve_image=deploy["resolve_image"],
        docker_cli=deploy["docker_cli"],
        variables=variables,
        roles=roles,
    )


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


def _signing_secret(
    security: dict[str, Any], environ: Any, base: Path, problems: list[tuple[str, str]]
) -> Secret | None:
    """The job-signing secret, from (in order) the environment, a file, or the config itself.

    A file (such as a Docker secret at /run/secrets/...) or the environment is preferred;
    an inline value is accepted for local use but keeps the secret in the config file.
    """
    if environ.get(SIGNING_SECRET_ENV):
        value, key = environ[SIGNING_SECRET_ENV], SIGNING_SECRET_ENV
    else:
        file_key = "security.signing_secret_file"
        file = environ.get(SIGNING_SECRET_FILE_ENV) or security.get("signing_secret_file")
        if environ.get(SIGNING_SECRET_FILE_ENV):
            file_key = SIGNING_SECRET_FILE_ENV
        if file:
            try:
                value, key = (base / file).read_text(encoding="utf-8").strip(), file_key
            except OSError as exc:
                problems.append((file_key, f"cannot read {file}: {exc.strerror or exc}"))
                return None
        elif security.get("signing_secret"):
            value, key = security["signing_secret"], "security.signing_secret"
        else:
            problems.append(
                (
                    "security.signing_secret_file",
                    f"no signing secret: set ${SIGNING_SECRET_ENV}, ${SIGNING_SECRET_FILE_ENV}, "
                    "security.signing_secret_file or security.signing_secret",
                )
            )
            return None
    if len(value) < MIN_SECRET_LENGTH:
        problems.append(
            (key, f"the signing secret must be at least {MIN_SECRET_LENGTH} characters")
        )
        return None
    return Secret(value.encode("utf-8"))


def _variables(table: Any, problems: list[tuple[str, str]]) -> dict[str, str]:
    if not isinstance(table, dict):
        problems.append(("variables", 'must be a table of NAME = "value"'))
        return {}
    out: dict[str, str] = {}
    for name, value in table.items():
        if not VARIABLE_NAME.match(name):
            problems.append((f"variables.{name}", "names are upper case: letters, digits and '_'"))
        elif not isinstance(value, str):
            problems.append((f"variables.{name}", "must be a string"))
        else:
            out[name] = value
    return out


def _roles(table: Any, problems: list[tuple[str, str]]) -> tuple[Role, ...]:
    from commands import REGISTRY  # local import: commands import bot modules too

    if not isinstance(table, dict):
        problems.append(("roles", "must be a table of roles"))
        return ()
    roles: list[Role] = []
    for name, spec in table.items():
        key = f"roles.{name}"
        if not isinstance(spec, dict):
            problems.append((key, "must be a table with users, commands and stacks"))
            continue
        for extra in set(spec) - _ROLE_KEYS:
            problems.append(
                (f"{key}.{extra}", f"unknown key (known: {', '.join(sorted(_ROLE_KEYS))})")
            )
        lists: dict[str, list[str]] = {}
        for part in sorted(_ROLE_KEYS):
            value = spec.get(part, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                problems.append((f"{key}.{part}", "must be a list of strings"))
                value = []
            lists[part] = value
        for i, user in enumerate(lists["users"]):
            if not USER_ID.match(user):
                problems.append(
                    (
                        f"{key}.users[{i}]",
                        f"{user!r} is not a stable user ID "
                        "(console:NAME, @user:server for Matrix, slack:U… for Slack)",
                    )
                )
        for i, command in enumerate(lists["commands"]):
            if command != "*" and command not in REGISTRY:
                problems.append((f"{key}.commands[{i}]", f"unknown command {command!r}"))
        for i, glob in enumerate(lists["stacks"]):
            if not re.match(r"^[a-z0-9*?\[\]_-]{1,64}$", glob):
                problems.append((f"{key}.stacks[{i}]", f"{glob!r} is not a stack name or glob"))
        roles.append(
            Role(
                name=name,
                users=frozenset(lists["users"]),
                commands=frozenset(lists["commands"]),
                stacks=tuple(lists["stacks"]),
            )
        )
    return tuple(roles)
