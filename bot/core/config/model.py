"""The validated configuration: plain frozen dataclasses, built only by ``parse``.

No field has a default here: every default lives in ``defaults.SCHEMA``, the one table the
parser, the generated reference (docs/CONFIGURATION.md) and the worker read.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path

from bot.core.alerting.matchers import Matcher
from bot.core.windows import WindowRule

Problems = list[tuple[str, str]]  # (key path, what is wrong), collected before raising


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
    # The stacks (globs) on which its members are the second approver, where one is
    # required (safety.second_approver_stacks). Once any role names a stack here, only
    # such members approve changes to it.
    approves: tuple[str, ...] = ()
    # The swarms (by name, from [swarms]) its grants hold on; empty: every swarm.
    swarms: tuple[str, ...] = ()

    def covers(self, swarm: str) -> bool:
        """Does this role hold on ``swarm`` ("" is the one swarm of a single-swarm bot)?"""
        return not self.swarms or not swarm or swarm in self.swarms


@dataclass(frozen=True)
class SwarmConfig:
    """One swarm of several (``[swarms.<name>]``): the worker started with ``--swarm name``
    serves it; commands reach it by ``name:`` or by their room's default."""

    name: str
    id: str  # its swarm ID; "" remembers the first one its worker finds
    docker_host: str  # the worker's DOCKER_HOST; "" uses the worker's environment
    stacks_dir: Path
    variables: dict[str, str]  # [variables] with this swarm's own over them
    rooms: tuple[str, ...]  # Matrix rooms (IDs or aliases) and Slack channels it is default in


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
class AlertRoute:
    """Where an alert group whose common labels match ``matchers`` (all of them) goes."""

    matchers: tuple[Matcher, ...]
    matrix: tuple[str, ...]  # room IDs or aliases
    slack: tuple[str, ...]  # channel IDs


@dataclass(frozen=True)
class AlertsConfig:
    """Alertmanager: its webhook's receiver (in the bot process, like the push webhook),
    where alert groups are told, and its API for !alerts and !silence."""

    host: str
    port: int  # 0: no receiver (the commands may still reach the API)
    path: str
    token: Secret | None = field(repr=False)  # bearer (Alertmanager's http_config.authorization)
    username: str  # basic auth (http_config.basic_auth), with ``password``
    password: Secret | None = field(repr=False)
    api_url: str  # Alertmanager's base URL, for !alerts, !silence, !silences, !unsilence
    routes: tuple[AlertRoute, ...]  # every route that matches gets the group
    default: AlertRoute  # where a group that matches no route goes
    service_labels: tuple[str, ...]
    stack_labels: tuple[str, ...]
    confirm_silence_over_seconds: int  # a longer silence needs a confirmation
    max_silence_seconds: int  # and none may be longer than this
    new_messages_per_minute: int  # per room; more new groups are folded into one message
    flap_seconds: int  # a group firing again this soon after resolving: the same message


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
    # Replicas that must have a job, its start and its answer before each counts (WAIT);
    # 0 without Sentinel. How long each such write waits for them.
    redis_replicas: int
    redis_wait_ms: int
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
    adapters: tuple[str, ...]
    # [variables] whose values may be shown in chat and logs (DOMAIN); all others are masked.
    public_variables: frozenset[str]
    docker_cli_timeout: float
    # Where the worker keeps its own record of the jobs it ran (see bot/swarm/ledger.py).
    worker_state_dir: Path
    confirm: frozenset[str]
    confirm_seconds: int
    second_approver_stacks: tuple[str, ...]
    rate_limit_per_minute: int
    # Refused and invalid commands a user may send in a minute before further ones are
    # dropped without an answer or an audit entry (a flood must not flush the trail).
    refusals_per_minute: int
    # The largest stack file read (a 50 MB file took a minute and 730 MB per check).
    max_stack_file_bytes: int
    # Stacks allowed specs that give a container the host (privileged, the docker socket,
    # host namespaces, devices): swarmbot's own stack needs the socket. Others are refused.
    host_access_stacks: tuple[str, ...]
    # Worker slots kept for read-only jobs (!ping, !services, !ps ...): a house full of
    # deploys never makes them wait.
    read_slots: int
    swarm_id: str  # "" remembers the first swarm a worker serves
    swarm_name: str
    health_host: str
    health_bot_port: int
    health_worker_port: int
    notice_routes: tuple[NoticeRoute, ...]
    notice_quiet_seconds: float
    notice_poll_seconds: float
    matrix: MatrixConfig | None
    slack: SlackConfig | None
    git: GitConfig | None
    webhook: WebhookConfig | None
    alerts: AlertsConfig | None
    timezone: str  # [windows] timezone: deploy windows and scheduled times ("at 22:00")
    windows: tuple[WindowRule, ...]
    registry: RegistryConfig
    changes: ChangesConfig
    # [swarms.<name>], in file order (the first is the default of rooms none names); empty
    # for a bot of one swarm, which names none anywhere.
    swarms: tuple[SwarmConfig, ...] = ()
    # The swarm this process serves: a worker's ``--swarm``; "" in the bot and for one swarm.
    swarm: str = ""
    docker_host: str = ""  # the worker's DOCKER_HOST from its swarm's config ("": as set)

    @property
    def swarm_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.swarms)

    def tag(self, swarm: str) -> str:
        """What begins every answer and notice of ``swarm`` where the bot serves several
        ("[prod] "), so a room that hears from two swarms knows which spoke; else ""."""
        return f"[{swarm}] " if swarm and len(self.swarms) > 1 else ""

    def swarm_of_room(self, room: str, aliases: dict[str, str] | None = None) -> str:
        """The swarm a command said in ``room`` goes to when it names none: the swarm whose
        ``rooms`` list it (by ID, or by an alias that resolves to it), else the first one;
        "" for a bot of one swarm."""
        for swarm in self.swarms:
            if any((aliases or {}).get(r, r) == room for r in swarm.rooms):
                return swarm.name
        return self.swarms[0].name if self.swarms else ""

    def secret_values(self) -> list[str]:
        """Every secret value this process holds, for masking output: the [variables] not
        declared public, the signing secret, and the chat credentials it was given."""
        values = [v for k, v in self.variables.items() if k not in self.public_variables]
        for swarm in self.swarms:
            values += [v for k, v in swarm.variables.items() if k not in self.public_variables]
        secrets: list[Secret | None] = [self.signing_secret]
        if self.matrix is not None:
            secrets += [self.matrix.access_token, self.matrix.password]
        if self.slack is not None:
            secrets += [self.slack.bot_token, self.slack.app_token, self.slack.signing_secret]
        if self.git is not None:
            secrets.append(self.git.token)
        if self.webhook is not None:
            secrets.append(self.webhook.secret)
        if self.alerts is not None:
            secrets += [self.alerts.token, self.alerts.password]
        for secret in secrets:
            if secret is not None:
                values.append(secret.reveal().decode("utf-8", "replace").strip())
        return values
