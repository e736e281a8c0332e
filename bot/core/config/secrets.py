"""Where secrets come from: the environment, a file (a Docker secret), or the config itself.

A secret is wrapped in ``Secret`` as soon as it is read, so that no repr, log line or error
can show it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bot.core.config.model import Problems, Secret
from bot.core.config.names import MIN_SECRET_LENGTH, SIGNING_SECRET_ENV, SIGNING_SECRET_FILE_ENV


def find_secret(
    section: str,
    key: str,
    table: dict[str, Any],
    environ: Any,
    base: Path,
    problems: Problems,
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


def signing_secret(
    security: dict[str, Any], environ: Any, base: Path, problems: Problems
) -> Secret | None:
    """The job-signing secret: required, and long enough to resist guessing."""
    found = find_secret("security", "signing_secret", security, environ, base, problems)
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
