"""``swarmbot``: one command line for every role (console, bot, worker, check-config,
healthcheck)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from bot import __version__
from bot.core import logs, scrub
from bot.core.config import DEFAULT_CONFIG_ENV, USER_ID, Config, ConfigError, load
from bot.core.config.swarms import on_swarm
from commands import REGISTRY

LOG_FORMAT_ENV = "SWARMBOT_LOG_FORMAT"
SWARM_ENV = "SWARMBOT_SWARM"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="swarmbot", description="Chat-ops for Docker Swarm.")
    parser.add_argument("--version", action="version", version=f"swarmbot {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument(
            "--config",
            default=os.environ.get(DEFAULT_CONFIG_ENV),
            help=f"config file (default: ${DEFAULT_CONFIG_ENV})",
        )
        p.add_argument(
            "--log-level", default=None, help="DEBUG, INFO, WARNING (default depends on command)"
        )
        p.add_argument(
            "--log-format",
            choices=logs.FORMATS,
            default=os.environ.get(LOG_FORMAT_ENV) or "text",
            help=f"text (for people) or json (one object per line, for log pipelines); "
            f"default ${LOG_FORMAT_ENV} or text",
        )
        return p

    console = add("console", "chat with the bot from this terminal")
    console.add_argument(
        "--user",
        default=None,
        help="your console user ID, e.g. console:alice (default: console:$USER)",
    )
    console.add_argument(
        "--wait",
        type=float,
        default=None,
        help="with stdin not a TTY: seconds to wait for queued jobs "
        "(default: the deploy deadline plus a minute)",
    )
    worker = add("worker", "run jobs from the queue against the local Docker engine")
    worker.add_argument("--name", default=None, help="consumer name (default: the host name)")
    worker.add_argument(
        "--swarm",
        default=None,
        help=f"the swarm of [swarms] this worker serves (or ${SWARM_ENV}); needed when the "
        "config names several",
    )
    worker.add_argument(
        "--burst",
        action="store_true",
        help="run the jobs queued now, one at a time, then exit (no watchers, no heartbeat)",
    )
    add("bot", "run the chat adapters named in bot.adapters (Matrix, Slack)")
    add("check-config", "validate the config file and report every problem")
    add(
        "doctor",
        "inside the deployed stack: which daemon, node and swarm; Redis; IPVS; the chat "
        "platforms from this network; the notices rooms joined (one line each, with the fix)",
    )
    sub.add_parser(
        "healthcheck",
        help="exit 0 if the swarmbot process here answers /healthz with 200 (the image's "
        "HEALTHCHECK)",
    )

    args = parser.parse_args(argv)
    if args.command == "healthcheck":
        return _healthcheck()
    if args.log_format not in logs.FORMATS:
        parser.error(f"--log-format / ${LOG_FORMAT_ENV}: one of {', '.join(logs.FORMATS)}")
    default_level = "WARNING" if args.command == "console" else "INFO"
    logs.setup(args.log_level or default_level, args.log_format)
    try:
        config = _load(args)
    except ConfigError as exc:
        print(
            f"swarmbot: bad config ({len(exc.problems)} problem{'s' * (len(exc.problems) > 1)}):",
            file=sys.stderr,
        )
        for key, problem in exc.problems:
            print(f"  {key}: {problem}", file=sys.stderr)
        return 2

    # Every output path of this process masks the secrets it holds (bot/core/scrub.py).
    scrub.install(config.secret_values())
    if args.command == "worker" and config.docker_host:
        # This worker's swarm's daemon: the SDK, the docker CLI and !ping all read it here.
        os.environ["DOCKER_HOST"] = config.docker_host
    if args.command in ("check-config", "worker") and not config.stacks_dir.is_dir():
        # Only the worker reads stack files; the bot may run on a node that has none.
        print(f"swarmbot: bot.stacks_dir: {config.stacks_dir}: not a directory", file=sys.stderr)
        return 2
    if args.command == "check-config":
        return _check_config(config)
    if args.command == "doctor":
        from bot.doctor import run as run_doctor

        return run_doctor(config)
    from bot.core.health import PortInUse

    try:
        return _run(config, args)
    except PortInUse as exc:
        print(f"swarmbot: {exc} (see [health] in the config)", file=sys.stderr)
        return 1


def _run(config: Config, args: argparse.Namespace) -> int:
    if args.command == "bot":
        if not config.adapters:
            print(
                "swarmbot: bot.adapters is empty; name the chat platforms to serve "
                "(the terminal chat is `swarmbot console`)",
                file=sys.stderr,
            )
            return 2
        from bot.chat.runner import run_bot

        asyncio.run(run_bot(config))
        return 0
    if args.command == "worker":
        from bot.swarm.worker import run_burst, run_forever  # only the worker imports Docker

        if args.burst:
            print(f"swarmbot: {run_burst(config, args.name)} job(s) run", file=sys.stderr)
            return 0
        run_forever(config, args.name)
        return 0
    return _console(config, args)


def _load(args: argparse.Namespace) -> Config:
    """The config as the command's process needs it: the worker without the chat sections
    (it is given no chat credentials); ``doctor`` as the container it runs in has it."""
    if args.command == "doctor":
        try:
            return load(args.config, chat=True, commands=REGISTRY)
        except ConfigError:
            # A worker's container: as its worker reads the config (its swarm's, if named).
            config = load(args.config, chat=False, commands=REGISTRY)
            named = os.environ.get(SWARM_ENV)
            return on_swarm(config, named) if named and config.swarms else config
    config = load(args.config, chat=args.command != "worker", commands=REGISTRY)
    if args.command == "worker":
        return on_swarm(config, args.swarm or os.environ.get(SWARM_ENV) or None)
    return config


def _healthcheck() -> int:
    from bot.core.health import check_local

    ok, lines = check_local()
    for line in lines:
        print(line)
    return 0 if ok else 1


def _check_config(config: Config) -> int:
    from bot.swarm.dockercli import refused_files, stack_files

    files = stack_files(config.stacks_dir)
    users = {u for r in config.roles for u in r.users}
    print(f"config OK: {config.source}")
    print(
        f"  roles: {len(config.roles)} ({', '.join(r.name for r in config.roles) or 'none'}), "
        f"users: {len(users)}"
    )
    if config.git is not None:
        git = config.git
        print(f"  stacks from git: {git.url} branch {git.branch}, folder {git.path or '/'}")
    else:
        print(f"  stacks in {config.stacks_dir}: {', '.join(files) or 'none'}")
        refused = refused_files(config.stacks_dir)
        if refused:
            print(f"  refused (not regular files; symlinks are never read): {', '.join(refused)}")
    if config.host_access_stacks:
        print(
            f"  stacks allowed to give containers the host: {', '.join(config.host_access_stacks)}"
        )
    changes = config.changes
    print(f"  changes found outside: {_policies(changes.policies, changes.default)}")
    if config.webhook is not None:
        hook = config.webhook
        print(f"  push webhook: http://{hook.host}:{hook.port}{hook.path}")
    print(f"  variables: {', '.join(sorted(config.variables)) or 'none'}")
    if not config.roles:
        print("  note: no roles, so nobody can run anything but !help and !whoami")
    return 0


def _policies(policies: tuple[tuple[str, str], ...], default: str) -> str:
    return ", ".join([f"{glob} {policy}" for glob, policy in policies] + [f"* {default}"])


def _console(config: Config, args: argparse.Namespace) -> int:
    from bot.chat.adapters.console import Console

    user = args.user or f"console:{os.environ.get('USER') or 'root'}"
    if not USER_ID.match(user) or not user.startswith("console:"):
        print(f"swarmbot: --user must look like console:NAME, not {user!r}", file=sys.stderr)
        return 2
    interactive = sys.stdin.isatty()
    wait = args.wait if args.wait is not None else config.deploy_deadline_seconds + 60
    try:
        return asyncio.run(Console(config, user).run(interactive, wait))
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        print(
            f"swarmbot: cannot reach Redis at {config.redis_url.split('@')[-1]}: {exc}",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
