"""Configuration: one TOML file, validated up front with exact key paths in every error.

Operators edit this file by hand, usually in a hurry, so every problem names the key
(``roles.ops.stacks[1]``) and what is wrong with it, and unknown keys are errors: a typo
such as ``user = [...]`` for ``users`` must not silently leave a role empty.
"""

from __future__ import annotations

import fnmatch
import os
import re
import tomllib
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.core.ids import GIT_REF, STACK_NAME

GIT_BRANCH = GIT_REF

DEFAULT_CONFIG_ENV = "SWARMBOT_CONFIG"
REDIS_URL_ENV = "SWARMBOT_REDIS_URL"
SIGNING_SECRET_ENV = "SWARMBOT_SIGNING_SECRET"  # noqa: S105 (a variable name)
SIGNING_SECRET_FILE_ENV = "SWARMBOT_SIGNING_SECRET_FILE"  # noqa: S105
MIN_SECRET_LENGTH = 32

# Who deploys a change by policy (changes.policy "auto"): no chat platform makes this ID.
AUTOMATION_USER = "swarmbot:auto"
USER_ID = re.compile(
    r"^(swarmbot:auto|console:[A-Za-z0-9._-]{1,64}|@[a-z0-9._=/+-]{1,255}:[A-Za-z0-9.:-]{1,255}|slack:[A-Z0-9]{2,32})$"
)
# Room IDs are opaque (room version 12 dropped the ":server" part); aliases keep it.
ROOM = re.compile(
    r"^(![A-Za-z0-9._~+/=-]{1,255}(:[A-Za-z0-9.:-]{1,255})?|#[^:\s]{1,255}:[A-Za-z0-9.:-]{1,255})$"
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
class MatrixConfig:
    homeserver: str
    user_id: str
    device_id: str
    access_token: Secret | None = field(repr=False)
    password: Secret | None = field(repr=False)
    rooms: tuple[str, ...]  # room IDs or aliases; every other room is ignored
    threads: bool
    max_command_age_seconds: int


@dataclass(frozen=True)
class SlackConfig:
    mode: str  # "socket" (no public URL needed) or "http" (Events API over HTTPS)
    bot_token: Secret = field(repr=False)
    app_token: Secret | None = field(repr=False)  # socket mode
    signing_secret: Secret | None = field(repr=False)  # http mode
    channels: tuple[str, ...]  # channel IDs; every other channel is ignored
    slash_command: str
    http_host: str
    http_port: int
    http_path: str
    api_url: str


@dataclass(frozen=True)
class NoticeRoute:
    """Where notices about the stacks matching ``stacks`` go."""

    stacks: tuple[str, ...]
    matrix: tuple[str, ...]  # room IDs
    slack: tuple[str, ...]  # channel IDs


POLICIES = ("notify", "confirm", "auto")
SEMVER_LEVELS = ("patch", "minor", "major")


@dataclass(frozen=True)
class GitConfig:
    """Stacks from a git repository: which one, and what a change to a stack's files does."""

    url: str
    branch: str
    path: str  # the folder of stack files inside the repository ("" for its root)
    ssh_key_file: Path | None
    known_hosts_file: Path | None
    token: Secret | None = field(repr=False)  # HTTPS
    token_user: str
    poll_seconds: float  # the fallback when no webhook arrives (0: webhooks only)


@dataclass(frozen=True)
class ChangesConfig:
    """What a change found outside the swarm (a push to git, a moved image tag) does."""

    policies: tuple[tuple[str, str], ...]  # (stack glob, notify|confirm|auto), first match wins
    default: str
    approval_seconds: int  # how long a change's confirmation code stays valid

    def policy_for(self, stack: str) -> str:
        return next(
            (p for glob, p in self.policies if fnmatch.fnmatchcase(stack, glob)), self.default
        )


@dataclass(frozen=True)
class WebhookConfig:
    """The push webhook endpoint (in the bot process; the worker is never exposed)."""

    host: str
    port: int
    path: str
    secret: Secret = field(repr=False)  # HMAC key (GitHub, Gitea, Forgejo) or token (GitLab)
    max_age_seconds: int  # older pushes are refused as stale


@dataclass(frozen=True)
class RegistryConfig:
    """Where image digests are looked up, how often, and which newer tags are offered."""

    credentials_file: Path | None  # Docker's config.json format: {"auths": {host: {auth}}}
    cache_seconds: float
    poll_seconds: float  # 0: only on !updates
    semver: tuple[tuple[str, str], ...]  # (stack glob, patch|minor|major)
    insecure: tuple[str, ...]  # registries spoken to over plain HTTP, as host:port

    def semver_for(self, stack: str) -> str:
        return next((lvl for glob, lvl in self.semver if fnmatch.fnmatchcase(stack, glob)), "")


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
    worker_timeout_seconds: int
    deploy_deadline_seconds: float
    deploy_first: tuple[str, ...]
    resolve_image: str
    docker_cli: str
    variables: dict[str, str]
    roles: tuple[Role, ...]
    adapters: tuple[str, ...] = ()
    # [variables] whose values may be shown in chat and logs (DOMAIN); all others are masked.
    public_variables: frozenset[str] = frozenset()
    docker_cli_timeout: float = 180.0
    # Where the worker keeps its own record of the jobs it ran (see bot/swarm/ledger.py).
    worker_state_dir: Path = Path("/var/lib/swarmbot")
    confirm: frozenset[str] = frozenset(
        {"undeploy", "deploy all", "deploy --prune", "rollback", "drain", "rm"}
    )
    confirm_seconds: int = 120
    second_approver_stacks: tuple[str, ...] = ()
    rate_limit_per_minute: int = 30
    # Refused and invalid commands a user may send in a minute before further ones are
    # dropped without an answer or an audit entry (a flood must not flush the trail).
    refusals_per_minute: int = 10
    # The largest stack file read (a 50 MB file took a minute and 730 MB per check).
    max_stack_file_bytes: int = 1024 * 1024
    # Stacks allowed specs that give a container the host (privileged, the docker socket,
    # host namespaces, devices): swarmbot's own stack needs the socket. Others are refused.
    host_access_stacks: tuple[str, ...] = ()
    # Worker slots kept for read-only jobs (!ping, !services, !ps ...): a house full of
    # deploys never makes them wait.
    read_slots: int = 2
    health_host: str = "127.0.0.1"
    health_bot_port: int = 0  # 0: no /healthz and /metrics
    health_worker_port: int = 0
    notice_routes: tuple[NoticeRoute, ...] = ()
    notice_quiet_seconds: float = 3.0
    notice_poll_seconds: float = 15.0
    matrix: MatrixConfig | None = None
    slack: SlackConfig | None = None
    git: GitConfig | None = None
    webhook: WebhookConfig | None = None
    registry: RegistryConfig = RegistryConfig(None, 300.0, 0.0, (), ())
    changes: ChangesConfig = ChangesConfig((), "notify", 86400)

    def secret_values(self) -> list[str]:
        """Every secret value this process holds, for masking output: the [variables] not
        declared public, the signing secret, and the chat credentials it was given."""
        values = [v for k, v in self.variables.items() if k not in self.public_variables]
        secrets: list[Secret | None] = [self.signing_secret]
        if self.matrix is not None:
            secrets += [self.matrix.access_token, self.matrix.password]
        if self.slack is not None:
            secrets += [self.slack.bot_token, self.slack.app_token, self.slack.signing_secret]
        if self.git is not None:
            secrets.append(self.git.token)
        if self.webhook is not None:
            secrets.append(self.webhook.secret)
        for secret in secrets:
            if secret is not None:
                values.append(secret.reveal().decode("utf-8", "replace").strip())
        return values


# The schema: key -> (type, default). A default of ``REQUIRED`` makes the key mandatory.
REQUIRED = object()
_SCHEMA: dict[str, dict[str, tuple[type | tuple[type, ...], Any]]] = {
    "bot": {
        "prefix": (str, "!"),
        "stacks_dir": (str, "stacks"),
        "adapters": (list, []),
    },
    "redis": {
        "url": (str, "redis://127.0.0.1:6379/0"),
        "prefix": (str, "swarmbot"),
    },
    "security": {
        "signing_secret": (str, None),
        "signing_secret_file": (str, None),
        "public_variables": (list, []),
        "host_access_stacks": (list, []),
    },
    "queue": {
        "job_ttl_seconds": (int, 600),
        "worker_concurrency": (int, 4),
        "worker_timeout_seconds": (int, 10),
        "state_dir": (str, "/var/lib/swarmbot"),
        "read_slots": (int, 2),
    },
    "deploy": {
        "deadline_seconds": ((int, float), 300),
        "first": (list, ["ingress", "support"]),
        "resolve_image": (str, "always"),
        "docker_cli": (str, "docker"),
        "cli_timeout_seconds": ((int, float), 180),
        "max_stack_file_bytes": (int, 1024 * 1024),
    },
    "safety": {
        "confirm": (list, ["undeploy", "deploy all", "deploy --prune", "rollback", "drain", "rm"]),
        "confirm_seconds": (int, 120),
        "second_approver_stacks": (list, []),
        "rate_limit_per_minute": (int, 30),
        "refusals_per_minute": (int, 10),
    },
    "health": {
        "host": (str, "127.0.0.1"),
        "bot_port": (int, 0),
        "worker_port": (int, 0),
    },
    "notices": {
        "route": (list, []),
        "quiet_seconds": ((int, float), 3),
        "poll_seconds": ((int, float), 15),
    },
    "git": {
        "url": (str, None),
        "branch": (str, "main"),
        "path": (str, "stacks"),
        "ssh_key_file": (str, None),
        "known_hosts_file": (str, None),
        "token": (str, None),
        "token_file": (str, None),
        "token_user": (str, "git"),
        "poll_seconds": ((int, float), 300),
    },
    "changes": {
        "policy": (dict, {}),
        "default": (str, "notify"),
        "approval_seconds": (int, 86400),
    },
    "webhook": {
        "host": (str, "127.0.0.1"),
        "port": (int, 0),
        "path": (str, "/hooks/git"),
        "secret": (str, None),
        "secret_file": (str, None),
        "max_age_seconds": (int, 3600),
    },
    "registry": {
        "credentials_file": (str, None),
        "cache_seconds": ((int, float), 300),
        "poll_seconds": ((int, float), 0),
        "semver": (dict, {}),
        "insecure": (list, []),
    },
    "matrix": {
        "homeserver": (str, None),
        "user_id": (str, None),
        "device_id": (str, "SWARMBOT"),
        "access_token": (str, None),
        "access_token_file": (str, None),
        "password": (str, None),
        "password_file": (str, None),
        "rooms": (list, []),
        "threads": (bool, True),
        "max_command_age_seconds": (int, 600),
    },
    "slack": {
        "mode": (str, "socket"),
        "bot_token": (str, None),
        "bot_token_file": (str, None),
        "app_token": (str, None),
        "app_token_file": (str, None),
        "signing_secret": (str, None),
        "signing_secret_file": (str, None),
        "channels": (list, []),
        "slash_command": (str, "/swarm"),
        "http_host": (str, "127.0.0.1"),
        "http_port": (int, 3000),
        "http_path": (str, "/slack/events"),
        "api_url": (str, "https://slack.com/api/"),
    },
}
ADAPTERS = ("matrix", "slack")
_ROLE_KEYS = {"users", "commands", "stacks"}


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
            wrong_bool = isinstance(value, bool) and typ is not bool
            if value is not None and (wrong_bool or not isinstance(value, typ)):
                problems.append(
                    (f"{section}.{key}", f"must be {_type_name(typ)}, not {type(value).__name__}")
                )
                value = default
            values[section][key] = value

    safety = values["safety"]
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
    stacks_dir = (base / bot["stacks_dir"]).resolve()  # checked by the worker, which reads it

    redis_url = environ.get(REDIS_URL_ENV) or redis_t["url"]
    if not re.match(r"^(redis|rediss|unix)://", redis_url):
        key = REDIS_URL_ENV if environ.get(REDIS_URL_ENV) else "redis.url"
        problems.append((key, "must start with redis://, rediss:// or unix://"))
    if not re.match(r"^[a-z][a-z0-9_-]{0,31}$", redis_t["prefix"]):
        problems.append(
            ("redis.prefix", "must be lowercase letters, digits, '-' or '_' (at most 32)")
        )

    secret = _signing_secret(security, environ, base, problems)

    for key, low, high in (
        ("job_ttl_seconds", 10, 86400),
        ("worker_concurrency", 1, 64),
        ("worker_timeout_seconds", 3, 300),
    ):
        if not low <= queue[key] <= high:
            problems.append((f"queue.{key}", f"must be between {low} and {high}"))
    if not 1 <= deploy["cli_timeout_seconds"] <= 3600:
        problems.append(("deploy.cli_timeout_seconds", "must be between 1 and 3600"))
    if not 1 <= deploy["deadline_seconds"] <= 3600:
        problems.append(("deploy.deadline_seconds", "must be between 1 and 3600"))
    if not 1024 <= deploy["max_stack_file_bytes"] <= 64 * 1024 * 1024:
        problems.append(("deploy.max_stack_file_bytes", "must be between 1024 and 67108864"))
    if not 0 <= queue["read_slots"] <= 16:
        problems.append(("queue.read_slots", "must be between 0 and 16"))
    if not 1 <= safety["refusals_per_minute"] <= 10_000:
        problems.append(("safety.refusals_per_minute", "must be between 1 and 10000"))
    for i, glob in enumerate(security["host_access_stacks"]):
        if not isinstance(glob, str) or not glob:
            problems.append((f"security.host_access_stacks[{i}]", "must be a stack name or glob"))
    first = deploy["first"]
    for i, name in enumerate(first):
        if not isinstance(name, str) or not STACK_NAME.match(name):
            problems.append((f"deploy.first[{i}]", "must be a stack name"))
    if deploy["resolve_image"] not in RESOLVE_IMAGE_MODES:
        problems.append(
            ("deploy.resolve_image", f"must be one of {', '.join(RESOLVE_IMAGE_MODES)}")
        )

    variables = _variables(raw.get("variables", {}), problems)
    public = security["public_variables"]
    for i, name in enumerate(public):
        if not isinstance(name, str) or name not in variables:
            problems.append((f"security.public_variables[{i}]", "must name a [variables] key"))
    roles = _roles(raw.get("roles", {}), problems, commands)
    _check_safety(safety, problems, commands)
    routes = _notice_routes(values["notices"], problems)
    for key in ("bot_port", "worker_port"):
        if not 0 <= values["health"][key] <= 65535:
            problems.append((f"health.{key}", "must be a TCP port, or 0 for none"))
    adapters = tuple(bot["adapters"])
    for i, name in enumerate(adapters):
        if name not in ADAPTERS:
            problems.append(
                (
                    f"bot.adapters[{i}]",
                    f"unknown adapter {name!r} (known: {', '.join(ADAPTERS)})",
                )
            )
    matrix = (
        _matrix(values["matrix"], environ, base, problems)
        if chat and "matrix" in adapters
        else None
    )
    slack = (
        _slack(values["slack"], environ, base, problems) if chat and "slack" in adapters else None
    )
    if chat:
        _check_notice_rooms(routes, matrix, slack, problems)
    git = _git(values["git"], environ, base, problems)
    changes = _changes(values["changes"], problems)
    roles += _automation_role(changes)
    webhook = _webhook(values["webhook"], environ, base, problems, git)
    registry = _registry(values["registry"], base, problems)

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
        worker_timeout_seconds=queue["worker_timeout_seconds"],
        deploy_deadline_seconds=float(deploy["deadline_seconds"]),
        deploy_first=tuple(first),
        resolve_image=deploy["resolve_image"],
        docker_cli=deploy["docker_cli"],
        docker_cli_timeout=float(deploy["cli_timeout_seconds"]),
        variables=variables,
        roles=roles,
        adapters=adapters,
        public_variables=frozenset(str(n) for n in public),
        worker_state_dir=(base / queue["state_dir"]).resolve(),
        confirm=frozenset(safety["confirm"]),
        confirm_seconds=safety["confirm_seconds"],
        second_approver_stacks=tuple(safety["second_approver_stacks"]),
        rate_limit_per_minute=safety["rate_limit_per_minute"],
        refusals_per_minute=safety["refusals_per_minute"],
        max_stack_file_bytes=deploy["max_stack_file_bytes"],
        host_access_stacks=tuple(str(g) for g in security["host_access_stacks"]),
        read_slots=queue["read_slots"],
        health_host=values["health"]["host"],
        health_bot_port=values["health"]["bot_port"],
        health_worker_port=values["health"]["worker_port"],
        notice_routes=routes,
        notice_quiet_seconds=float(values["notices"]["quiet_seconds"]),
        notice_poll_seconds=float(values["notices"]["poll_seconds"]),
        matrix=matrix,
        slack=slack,
        git=git,
        webhook=webhook,
        registry=registry,
        changes=changes,
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


def _find_secret(
    section: str,
    key: str,
    table: dict[str, Any],
    environ: Any,
    base: Path,
    problems: list[tuple[str, str]],
) -> tuple[str, str] | None:
    """A secret and where it came from, by (in order) ``$SWARMBOT_<SECTION>_<KEY>``,
    ``$SWARMBOT_<SECTION>_<KEY>_FILE``, ``<key>_file`` (a Docker secret such as
    /run/secrets/...) or ``<key>`` inline in the config (local use only: it keeps the
    secret in the file). ``None`` when none is set; a file that cannot be read is a problem.
    """
    env_name = f"SWARMBOT_{section.upper()}_{key.upper()}"
    env_name = SIGNING_SECRET_ENV if (section, key) == ("security", "signing_secret") else env_name
    if environ.get(env_name):
        return environ[env_name], env_name
    file_source = f"{section}.{key}_file"
    file = table.get(f"{key}_file")
    if environ.get(f"{env_name}_FILE"):
        file, file_source = environ[f"{env_name}_FILE"], f"{env_name}_FILE"
    if file:
        try:
            return (base / file).read_text(encoding="utf-8").strip(), file_source
        except OSError as exc:
            problems.append((file_source, f"cannot read {file}: {exc.strerror or exc}"))
            return None
    if table.get(key):
        return table[key], f"{section}.{key}"
    return None


def _signing_secret(
    security: dict[str, Any], environ: Any, base: Path, problems: list[tuple[str, str]]
) -> Secret | None:
    """The job-signing secret: required, and long enough to resist guessing."""
    found = _find_secret("security", "signing_secret", security, environ, base, problems)
    if found is None:
        if not any(
            k == "security.signing_secret_file" or k == SIGNING_SECRET_FILE_ENV
            for k, _ in problems
        ):
            problems.append(
                (
                    "security.signing_secret_file",
                    f"no signing secret: set ${SIGNING_SECRET_ENV}, ${SIGNING_SECRET_FILE_ENV}, "
                    "security.signing_secret_file or security.signing_secret",
                )
            )
        return None
    value, key = found
    if len(value) < MIN_SECRET_LENGTH:
        problems.append(
            (key, f"the signing secret must be at least {MIN_SECRET_LENGTH} characters")
        )
        return None
    return Secret(value.encode("utf-8"))


def _matrix(
    table: dict[str, Any], environ: Any, base: Path, all_problems: list[tuple[str, str]]
) -> MatrixConfig | None:
    """The Matrix adapter's settings; called only when the adapter is enabled."""
    problems: list[tuple[str, str]] = []
    if not table.get("homeserver") or not re.match(r"^https?://", table["homeserver"]):
        problems.append(("matrix.homeserver", "must be the homeserver's URL, https://..."))
    user_id = table.get("user_id") or ""
    if not re.match(r"^@[a-z0-9._=/+-]+:[A-Za-z0-9.:-]+$", user_id):
        problems.append(("matrix.user_id", "must be the bot's full Matrix ID, @bot:example.org"))
    token = _find_secret("matrix", "access_token", table, environ, base, problems)
    password = (
        None if token else _find_secret("matrix", "password", table, environ, base, problems)
    )
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


def _slack(
    table: dict[str, Any], environ: Any, base: Path, all_problems: list[tuple[str, str]]
) -> SlackConfig | None:
    """The Slack adapter's settings; called only when the adapter is enabled."""
    problems: list[tuple[str, str]] = []
    mode = table["mode"]
    if mode not in ("socket", "http"):
        problems.append(("slack.mode", "must be socket or http"))
    found = {
        key: _find_secret("slack", key, table, environ, base, problems)
        for key in ("bot_token", "app_token", "signing_secret")
    }
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
    channels = table["channels"]
    if not channels:
        problems.append(
            ("slack.channels", "list the channel IDs the bot serves; it ignores all others")
        )
    for i, channel in enumerate(channels):
        if not isinstance(channel, str) or not re.match(r"^[CG][A-Z0-9]{2,32}$", channel):
            problems.append(
                (f"slack.channels[{i}]", "must be a channel ID such as C0123ABCD (not a #name)")
            )
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
        channels=tuple(channels),
        slash_command=table["slash_command"],
        http_host=table["http_host"],
        http_port=table["http_port"],
        http_path=table["http_path"],
        api_url=table["api_url"],
    )


def _globs(
    key: str, table: dict[str, Any], allowed: tuple[str, ...], problems: list[tuple[str, str]]
) -> tuple[tuple[str, str], ...]:
    """A table of stack glob -> one of ``allowed``, in the file's order (first match wins)."""
    out = []
    for glob, value in table.items():
        if not re.match(r"^[a-z0-9*?\[\]-]{1,64}$", glob):
            problems.append((f"{key}.{glob}", "is not a stack name or glob"))
        elif value not in allowed:
            problems.append((f"{key}.{glob}", f"must be one of {', '.join(allowed)}"))
        else:
            out.append((glob, str(value)))
    return tuple(out)


def _git(
    table: dict[str, Any], environ: Any, base: Path, problems: list[tuple[str, str]]
) -> GitConfig | None:
    """[git]: absent (no url) means stacks come from ``bot.stacks_dir`` alone."""
    url = table["url"]
    if not url:
        return None
    if not re.match(r"^(https?|ssh|git|file)://[^\s]+$|^[A-Za-z0-9._-]+@[^\s:]+:[^\s]+$", url):
        problems.append(("git.url", "must be an https://, ssh://, git:// or user@host:path URL"))
    elif re.match(r"^[a-z]+://[^/@]*:[^/@]*@", url):
        problems.append(("git.url", "has a password in it: put the token in git.token_file"))
    if not GIT_BRANCH.match(table["branch"]):
        problems.append(("git.branch", "must be a branch name"))
    path = table["path"].strip("/")
    if path and (".." in path.split("/") or not re.match(r"^[A-Za-z0-9._/-]{1,200}$", path)):
        problems.append(("git.path", "must be a folder inside the repository, such as stacks"))
    files: dict[str, Path | None] = {}
    for key in ("ssh_key_file", "known_hosts_file"):
        files[key] = (base / table[key]).resolve() if table[key] else None
        if files[key] is not None and not os.access(files[key], os.R_OK):  # type: ignore[arg-type]
            problems.append((f"git.{key}", f"cannot read {table[key]}"))
    if files["ssh_key_file"] is not None and files["known_hosts_file"] is None:
        problems.append(
            ("git.known_hosts_file", "an SSH key needs the server's host key (ssh-keyscan HOST)")
        )
    token = _find_secret("git", "token", table, environ, base, problems)
    if not 0 <= table["poll_seconds"] <= 86400:
        problems.append(("git.poll_seconds", "must be between 0 (webhooks only) and 86400"))
    return GitConfig(
        url=url,
        branch=table["branch"],
        path=path,
        ssh_key_file=files["ssh_key_file"],
        known_hosts_file=files["known_hosts_file"],
        token=Secret(token[0].encode()) if token else None,
        token_user=table["token_user"],
        poll_seconds=float(table["poll_seconds"]),
    )


def _changes(table: dict[str, Any], problems: list[tuple[str, str]]) -> ChangesConfig:
    if table["default"] not in POLICIES:
        problems.append(("changes.default", f"must be one of {', '.join(POLICIES)}"))
    if not 60 <= table["approval_seconds"] <= 30 * 86400:
        problems.append(("changes.approval_seconds", "must be between 60 and 2592000"))
    return ChangesConfig(
        policies=_globs("changes.policy", table["policy"], POLICIES, problems),
        default=table["default"],
        approval_seconds=table["approval_seconds"],
    )


def _automation_role(changes: ChangesConfig) -> tuple[Role, ...]:
    """The one grant config makes by itself: where changes.policy says "auto", the
    watcher's own jobs may deploy (and nothing else, nowhere else)."""
    globs = [glob for glob, policy in changes.policies if policy == "auto"]
    if changes.default == "auto":
        globs.append("*")
    if not globs:
        return ()
    name = "changes.policy auto"
    return (Role(name, frozenset({AUTOMATION_USER}), frozenset({"deploy"}), tuple(globs)),)


def _webhook(
    table: dict[str, Any],
    environ: Any,
    base: Path,
    problems: list[tuple[str, str]],
    git: GitConfig | None,
) -> WebhookConfig | None:
    if not table["port"]:
        return None
    if not 1 <= table["port"] <= 65535:
        problems.append(("webhook.port", "must be a TCP port, or 0 for no endpoint"))
    if git is None:
        problems.append(("webhook.port", "a push webhook needs a [git] repository"))
    if not re.match(r"^/[A-Za-z0-9._/-]{0,100}$", table["path"]):
        problems.append(("webhook.path", "must be a URL path such as /hooks/git"))
    secret = _find_secret("webhook", "secret", table, environ, base, problems)
    if secret is None or len(secret[0]) < 16:
        problems.append(
            ("webhook.secret_file", "the webhook needs a secret of at least 16 characters")
        )
        return None
    if not 60 <= table["max_age_seconds"] <= 7 * 86400:
        problems.append(("webhook.max_age_seconds", "must be between 60 and 604800"))
    return WebhookConfig(
        host=table["host"],
        port=table["port"],
        path=table["path"],
        secret=Secret(secret[0].encode()),
        max_age_seconds=table["max_age_seconds"],
    )


def _registry(
    table: dict[str, Any], base: Path, problems: list[tuple[str, str]]
) -> RegistryConfig:
    creds = (base / table["credentials_file"]).resolve() if table["credentials_file"] else None
    if creds is not None and not os.access(creds, os.R_OK):
        problems.append(("registry.credentials_file", f"cannot read {table['credentials_file']}"))
    for key, low, high in (("cache_seconds", 0, 86400), ("poll_seconds", 0, 7 * 86400)):
        if not low <= table[key] <= high:
            problems.append((f"registry.{key}", f"must be between {low} and {high}"))
    for i, host in enumerate(table["insecure"]):
        if not isinstance(host, str) or not re.match(r"^[A-Za-z0-9.-]+(:\d{1,5})?$", host):
            problems.append((f"registry.insecure[{i}]", "must be a registry as host:port"))
    return RegistryConfig(
        credentials_file=creds,
        cache_seconds=float(table["cache_seconds"]),
        poll_seconds=float(table["poll_seconds"]),
        semver=_globs("registry.semver", table["semver"], SEMVER_LEVELS, problems),
        insecure=tuple(str(h) for h in table["insecure"]),
    )


def _check_safety(
    safety: dict[str, Any], problems: list[tuple[str, str]], commands: Collection[str]
) -> None:
    for i, name in enumerate(safety["confirm"]):
        if name not in ("deploy all", "deploy --prune") and name not in commands:
            problems.append(
                (
                    f"safety.confirm[{i}]",
                    f'unknown command {name!r} (or "deploy all", "deploy --prune")',
                )
            )
    for i, glob in enumerate(safety["second_approver_stacks"]):
        if not isinstance(glob, str) or not re.match(r"^[a-z0-9*?\[\]_-]{1,64}$", glob):
            problems.append(
                (f"safety.second_approver_stacks[{i}]", f"{glob!r} is not a stack name or glob")
            )
    if not 10 <= safety["confirm_seconds"] <= 3600:
        problems.append(("safety.confirm_seconds", "must be between 10 and 3600"))
    if not 1 <= safety["rate_limit_per_minute"] <= 10_000:
        problems.append(("safety.rate_limit_per_minute", "must be between 1 and 10000"))


def _notice_routes(
    notices: dict[str, Any], problems: list[tuple[str, str]]
) -> tuple[NoticeRoute, ...]:
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
        for j, room in enumerate(parts["matrix"]):
            if not ROOM.match(room) or room.startswith("#"):
                problems.append((f"{key}.matrix[{j}]", "must be a room ID (!id:server)"))
        for j, channel in enumerate(parts["slack"]):
            if not re.match(r"^[CG][A-Z0-9]{2,32}$", channel):
                problems.append((f"{key}.slack[{j}]", "must be a channel ID such as C0123ABCD"))
        routes.append(NoticeRoute(parts["stacks"], parts["matrix"], parts["slack"]))
    if not 0.5 <= notices["quiet_seconds"] <= 300:
        problems.append(("notices.quiet_seconds", "must be between 0.5 and 300"))
    if not 2 <= notices["poll_seconds"] <= 3600:
        problems.append(("notices.poll_seconds", "must be between 2 and 3600"))
    return tuple(routes)


def _check_notice_rooms(
    routes: tuple[NoticeRoute, ...],
    matrix: MatrixConfig | None,
    slack: SlackConfig | None,
    problems: list[tuple[str, str]],
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
        for platform, places in served.items():
            for j, place in enumerate(getattr(route, platform)):
                if place not in places:
                    problems.append(
                        (
                            f"notices.route[{i}].{platform}[{j}]",
                            f"{place} is not in {where[platform]}: the bot posts only where "
                            "it serves (and is invited); add it there",
                        )
                    )


def notice_rooms_unserved(config: Config, served: set[str]) -> list[str]:
    """The config keys of notice rooms outside ``served`` (the Matrix room IDs the bot
    serves once its aliases are resolved), each with the room."""
    return [
        f"notices.route[{i}].matrix[{j}] = {room}"
        for i, route in enumerate(config.notice_routes)
        for j, room in enumerate(route.matrix)
        if room not in served
    ]


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


def _roles(
    table: Any, problems: list[tuple[str, str]], commands: Collection[str]
) -> tuple[Role, ...]:
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
            if command != "*" and command not in commands:
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
