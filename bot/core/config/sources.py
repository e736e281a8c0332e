"""Where stacks and images come from, and what a change found there does: [git],
[webhook], [registry] and [changes].
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from bot.core.config.defaults import POLICIES, SEMVER_LEVELS
from bot.core.config.model import (
    ChangesConfig,
    GitConfig,
    Problems,
    RegistryConfig,
    Role,
    Secret,
    WebhookConfig,
)
from bot.core.config.names import AUTOMATION_USER, GIT_BRANCH
from bot.core.config.secrets import find_secret


def globs(
    key: str, table: dict[str, Any], allowed: tuple[str, ...], problems: Problems
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


def git(table: dict[str, Any], environ: Any, base: Path, problems: Problems) -> GitConfig | None:
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
    token = find_secret("git", "token", table, environ, base, problems)
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


def changes(table: dict[str, Any], problems: Problems) -> ChangesConfig:
    if table["default"] not in POLICIES:
        problems.append(("changes.default", f"must be one of {', '.join(POLICIES)}"))
    if not 60 <= table["approval_seconds"] <= 30 * 86400:
        problems.append(("changes.approval_seconds", "must be between 60 and 2592000"))
    return ChangesConfig(
        policies=globs("changes.policy", table["policy"], POLICIES, problems),
        default=table["default"],
        approval_seconds=table["approval_seconds"],
    )


def automation_role(changes: ChangesConfig) -> tuple[Role, ...]:
    """The one grant config makes by itself: where changes.policy says "auto", the
    watcher's own jobs may deploy (and nothing else, nowhere else)."""
    globs = [glob for glob, policy in changes.policies if policy == "auto"]
    if changes.default == "auto":
        globs.append("*")
    if not globs:
        return ()
    name = "changes.policy auto"
    return (Role(name, frozenset({AUTOMATION_USER}), frozenset({"deploy"}), tuple(globs)),)


def webhook(
    table: dict[str, Any],
    environ: Any,
    base: Path,
    problems: Problems,
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
    secret = find_secret("webhook", "secret", table, environ, base, problems)
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


def registry(table: dict[str, Any], base: Path, problems: Problems) -> RegistryConfig:
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
        semver=globs("registry.semver", table["semver"], SEMVER_LEVELS, problems),
        insecure=tuple(str(h) for h in table["insecure"]),
    )
