"""``swarmbot check-config``: every problem reported with its exact key; exit non-zero."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.harness import ROOT

pytestmark = pytest.mark.unit

GOOD_SECRET = "s" * 40


def check(
    tmp_path: Path, text: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "stacks").mkdir(exist_ok=True)
    config = tmp_path / "config.toml"
    config.write_text(textwrap.dedent(text))
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", "check-config", "--config", str(config)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
    )


def test_good_config_passes(tmp_path: Path) -> None:
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "dev.yaml").write_text("services: {}\n")
    proc = check(
        tmp_path,
        f"""
        [security]
        signing_secret = "{GOOD_SECRET}"
        [roles.ops]
        users = ["console:alice", "@alice:example.org", "slack:U0123ABC"]
        commands = ["deploy", "services"]
        stacks = ["dev*"]
    """,
    )
    assert proc.returncode == 0, proc.stderr
    assert "config OK" in proc.stdout
    assert "stacks in" in proc.stdout and "dev" in proc.stdout


def test_every_problem_is_named_by_its_key(tmp_path: Path) -> None:
    proc = check(
        tmp_path,
        """
        [bot]
        prefixx = "!"
        [deploy]
        deadline_seconds = "soon"
        resolve_image = "sometimes"
        [roles.ops]
        user = ["console:alice"]
        users = ["Alice Smith"]
        commands = ["deploy", "reboot"]
        stacks = ["../etc"]
        approves = ["prod/*"]
        [variables]
        domain = "x"
        [windows]
        timezone = "Mars/Olympus"
        "prod*" = ["weekdays 09:00-16:00", "Mon-Fri 09:00-16:00"]
        "dev" = "always"
        [alerts]
        port = 9095
        [[alerts.route]]
        match = ['severity=~"(crit"']
        matrix = ["!ops:example.org"]
    """,
    )
    assert proc.returncode == 2
    err = proc.stderr
    for expected in [
        "bot.prefixx: unknown key",
        "deploy.deadline_seconds: must be a number, not str",
        "deploy.resolve_image: must be one of always, changed, never",
        "roles.ops.user: unknown key",
        "roles.ops.users[0]: 'Alice Smith' is not a stable user ID",
        "roles.ops.commands[1]: unknown command 'reboot'",
        "roles.ops.stacks[0]: '../etc' is not a stack name or glob",
        "variables.domain: names are upper case",
        "roles.ops.approves[0]: 'prod/*' is not a stack name or glob",
        "windows.timezone: 'Mars/Olympus' is not a time zone",
        "windows.\"prod*\"[0]: 'weekdays' is not a day or range of days",
        'windows."dev": must be a list of windows',
        "alerts.token_file: the receiver needs a bearer token",
        "alerts.route[0].match[0]: the regular expression for severity is not valid",
        "security.signing_secret_file: no signing secret",
    ]:
        assert expected in err, f"{expected!r} not in\n{err}"


def test_short_secret_and_missing_secret_file(tmp_path: Path) -> None:
    proc = check(tmp_path, '[security]\nsigning_secret = "short"\n')
    assert (
        "security.signing_secret: the signing secret must be at least 32 characters" in proc.stderr
    )
    proc = check(tmp_path, '[security]\nsigning_secret_file = "/nonexistent/secret"\n')
    assert "security.signing_secret_file: cannot read /nonexistent/secret" in proc.stderr
    assert proc.returncode == 2


def test_secret_from_environment_and_file(tmp_path: Path) -> None:
    proc = check(tmp_path, "", env={"SWARMBOT_SIGNING_SECRET": GOOD_SECRET})
    assert proc.returncode == 0, proc.stderr
    (tmp_path / "secret").write_text(GOOD_SECRET + "\n")
    proc = check(tmp_path, "", env={"SWARMBOT_SIGNING_SECRET_FILE": str(tmp_path / "secret")})
    assert proc.returncode == 0, proc.stderr
    assert GOOD_SECRET not in proc.stdout + proc.stderr


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    proc = check(tmp_path, "[bot\n")
    assert proc.returncode == 2 and "not valid TOML" in proc.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "bot.cli", "check-config", "--config", str(tmp_path / "nope.toml")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_redis_url_from_environment_overrides(tmp_path: Path) -> None:
    proc = check(
        tmp_path,
        f'[security]\nsigning_secret = "{GOOD_SECRET}"\n',
        env={"SWARMBOT_REDIS_URL": "http://nope"},
    )
    assert "SWARMBOT_REDIS_URL: must start with redis://" in proc.stderr


def test_example_config_is_valid_and_documents_every_key(tmp_path: Path) -> None:
    from bot.core.config import SCHEMA

    text = (ROOT / "config.example.toml").read_text()
    env = {"SWARMBOT_SIGNING_SECRET": GOOD_SECRET}
    proc = check(
        tmp_path, text.replace('stacks_dir = "stacks"', f'stacks_dir = "{ROOT / "stacks"}"'), env
    )
    assert proc.returncode == 0, proc.stderr
    assert "cdn, ci, community, dev, ingress, support, swarmbot, sysadmin" in proc.stdout
    for section, keys in SCHEMA.items():
        assert f"[{section}]" in text
        for key in keys:
            documented = re.search(rf"^#? ?{key} = ", text, re.M) or f"[[{section}.{key}]]" in text
            assert documented, f"{section}.{key} is not documented"


def test_matrix_needs_credentials_and_rooms(tmp_path: Path) -> None:
    base = f"""
        [bot]
        adapters = ["matrix"]
        [security]
        signing_secret = "{GOOD_SECRET}"
        [matrix]
        homeserver = "http://127.0.0.1:8008"
        user_id = "@swarmbot:localhost"
    """
    proc = check(tmp_path, base)
    assert proc.returncode == 2
    assert "matrix.access_token_file: no credentials" in proc.stderr
    assert "matrix.rooms: list the rooms the bot serves" in proc.stderr
    token = "syt_" + "t" * 30
    proc = check(
        tmp_path,
        base + 'rooms = ["!abc123:localhost", "!opaqueV12id", "#ops:localhost"]\n',
        env={"SWARMBOT_MATRIX_ACCESS_TOKEN": token},
    )
    assert proc.returncode == 0, proc.stderr
    assert token not in proc.stdout + proc.stderr
    proc = check(tmp_path, base.replace('"matrix"', '"irc"'))
    assert "bot.adapters[0]: unknown adapter 'irc'" in proc.stderr


def test_the_worker_is_given_no_chat_credentials(tmp_path: Path) -> None:
    """The worker never talks to a chat platform: it starts without the tokens."""
    from bot.core.config import ConfigError, load
    from commands import REGISTRY

    (tmp_path / "stacks").mkdir()
    config = tmp_path / "config.toml"
    config.write_text(
        f'[bot]\nadapters = ["matrix", "slack"]\n[security]\nsigning_secret = "{GOOD_SECRET}"\n'
        '[matrix]\nhomeserver = "http://127.0.0.1:8008"\nuser_id = "@bot:localhost"\n'
        'rooms = ["!abc:localhost"]\n[slack]\nchannels = ["C0123ABCD"]\n'
    )
    loaded = load(config, chat=False, commands=REGISTRY)
    assert loaded.matrix is None and loaded.slack is None
    try:
        load(config, commands=REGISTRY)
    except ConfigError as exc:
        keys = {key for key, _ in exc.problems}
        assert {"matrix.access_token_file", "slack.bot_token_file"} <= keys, keys
    else:
        raise AssertionError("the bot started without chat credentials")


def test_the_stack_config_of_swarmbot_itself_is_valid(tmp_path: Path) -> None:
    text = (ROOT / "stacks/config/swarmbot.toml").read_text()
    env = {
        "SWARMBOT_SIGNING_SECRET": GOOD_SECRET,
        "SWARMBOT_MATRIX_ACCESS_TOKEN": "syt_" + "t" * 30,
        "SWARMBOT_REDIS_URL": "redis://redis:6379/0",
    }
    proc = check(tmp_path, text.replace('"/srv/swarmbot/stacks"', f'"{ROOT / "stacks"}"'), env)
    assert proc.returncode == 0, proc.stderr
    assert "swarmbot" in proc.stdout


def test_slack_tokens_are_checked_by_shape_and_mode(tmp_path: Path) -> None:
    base = f"""
        [bot]
        adapters = ["slack"]
        [security]
        signing_secret = "{GOOD_SECRET}"
        [slack]
        channels = ["#ops"]
    """
    proc = check(tmp_path, base, env={"SWARMBOT_SLACK_BOT_TOKEN": "xapp-wrong-kind"})
    assert proc.returncode == 2
    assert "SWARMBOT_SLACK_BOT_TOKEN: a Slack bot_token starts with xoxb-" in proc.stderr
    assert "slack.app_token_file: no app_token (xapp-…)" in proc.stderr
    assert "slack.channels[0]: must be a channel ID such as C0123ABCD (not a #name)" in proc.stderr
    fixed = base.replace('"#ops"', '"C0123ABCD"')
    env = {"SWARMBOT_SLACK_BOT_TOKEN": "xoxb-1-abc", "SWARMBOT_SLACK_APP_TOKEN": "xapp-1-abc"}
    assert check(tmp_path, fixed, env).returncode == 0
    http = fixed + 'mode = "http"\n'
    proc = check(tmp_path, http, env={"SWARMBOT_SLACK_BOT_TOKEN": "xoxb-1-abc"})
    assert "slack.signing_secret_file: http mode needs the app's signing secret" in proc.stderr


def test_configuration_reference_is_generated_from_the_example() -> None:
    """docs/CONFIGURATION.md is `python -m bot.configref` of config.example.toml, and the
    example explains every key the validator knows."""
    from bot.core.configref import EXAMPLE, REFERENCE, generate, missing

    example = EXAMPLE.read_text(encoding="utf-8")
    assert missing(example) == []
    assert REFERENCE.read_text(encoding="utf-8") == generate(example), (
        "docs/CONFIGURATION.md is stale: python -m bot.core.configref > docs/CONFIGURATION.md"
    )


def test_swarms_are_checked_key_by_key(tmp_path: Path) -> None:
    proc = check(
        tmp_path,
        f"""
        [security]
        signing_secret = "{GOOD_SECRET}"
        [swarm]
        id = "k3v0bq6n0tq8rc0x7ahk3xhsa"
        [swarms.prod]
        docker_host = "http://nope"
        rooms = ["C0OPS0001", "nonsense room"]
        colour = "blue"
        [swarms.staging]
        rooms = ["C0OPS0001"]
        variables = {{ domain = "x" }}
        [swarms.Bad_Name]
        [roles.ops]
        users = ["console:alice"]
        commands = ["*"]
        stacks = ["*"]
        swarms = ["prod", "moon"]
        [windows]
        "mars:*" = ["daily 09:00-10:00"]
    """,
    )
    assert proc.returncode == 2
    for key, says in (
        ("swarm", "give each swarm its id in [swarms.<name>]"),
        ("swarms.prod.docker_host", "unix://, tcp:// or ssh://"),
        ("swarms.prod.rooms[1]", "not a Matrix room or a Slack channel ID"),
        ("swarms.prod.colour", "unknown key"),
        ("swarms.staging.rooms", "C0OPS0001 is already the room of prod"),
        ("swarms.staging.variables.domain", "upper case"),
        ("swarms.Bad_Name", "lowercase letters"),
        ("roles.ops.swarms[1]", "unknown swarm 'moon' (known: prod, staging)"),
        ('windows."mars:*"', "unknown swarm 'mars'"),
    ):
        assert f"  {key}: " in proc.stderr and says in proc.stderr, (key, proc.stderr)


def test_a_worker_of_several_swarms_is_told_to_name_one(tmp_path: Path) -> None:
    (tmp_path / "stacks").mkdir()
    config = tmp_path / "config.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            [security]
            signing_secret = "{GOOD_SECRET}"
            [redis]
            url = "redis://127.0.0.1:1/0"
            [swarms.prod]
            [swarms.staging]
            """
        )
    )
    for extra, says in (
        ([], "--swarm: the config has several swarms; name one: prod, staging"),
        (["--swarm", "moon"], "--swarm: no swarm 'moon' in the config (it has prod, staging)"),
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "bot.cli", "worker", "--config", str(config), *extra],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={"PATH": "/usr/bin:/bin"},
            timeout=60,
        )
        assert proc.returncode == 2 and says in proc.stderr, proc.stderr
