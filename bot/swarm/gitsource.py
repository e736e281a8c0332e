"""Stack files from a git repository: the worker's clone, and a commit's files on disk.

Why the git CLI and not a library: it speaks every transport operators use (smart HTTP,
SSH with their own key and known_hosts, git://) exactly as their own ``git`` does, so an
error in chat reads like one they can reproduce by hand; dulwich would need paramiko for
SSH and pygit2 a libgit2 built with it. It runs with an argument list (never a shell),
``--end-of-options`` before anything from chat, no terminal prompt, and hooks off.

Credentials never reach argv or the clone's config, where ``ps`` and ``.git/config`` would
show them: an HTTPS token travels as an ``http.extraHeader`` in the environment
(``GIT_CONFIG_COUNT``), an SSH key as ``-i`` in ``GIT_SSH_COMMAND``.

A commit's files are written out by swarmbot itself from ``git archive``: regular files
only. A symlink in the repository (``secrets.env -> /run/secrets/...``) or a path leaving
the folder is skipped, so a commit cannot make a deploy read the worker's own files.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import re
import shlex
import shutil
import subprocess
import tarfile
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from bot.core.config import GitConfig
from bot.core.ids import GIT_REF, STACK_NAME
from bot.core.scrub import masker

log = logging.getLogger("swarmbot.git")

TIMEOUT_SECONDS = 120.0
TREES_KEPT = 8  # commits whose files stay on disk (a deploy, its diff, a rollback target)
HEX = re.compile(r"^[0-9a-f]{7,40}$")
REMOTE = "refs/remotes/origin/"
AUTH_FAILED = (
    "could not read Username",
    "Authentication failed",
    "Permission denied (publickey",
)


class GitError(Exception):
    """git refused or could not reach the repository; the message is safe for chat."""


@dataclass(frozen=True)
class Commit:
    sha: str
    subject: str
    author: str
    time: int  # committer time, Unix seconds

    @property
    def short(self) -> str:
        return self.sha[:7]


class GitSource:
    """One repository's clone (bare, under the worker's state directory) and its trees."""

    def __init__(self, config: GitConfig, state_dir: Path) -> None:
        self.config = config
        self.root = state_dir / "git"
        self.repo = self.root / "repo.git"
        self.trees = self.root / "trees"
        self._lock = threading.Lock()  # one fetch or tree write at a time

    # -- running git ---------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.root),
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ASKPASS": "/bin/false",
            "GIT_CONFIG_NOSYSTEM": "1",
            "LC_ALL": "C",
        }
        pairs = [("core.hooksPath", "/dev/null"), ("protocol.ext.allow", "never")]
        if self.config.token is not None:
            user = self.config.token_user.encode()
            basic = base64.b64encode(user + b":" + self.config.token.reveal()).decode()
            pairs.append(("http.extraHeader", f"Authorization: Basic {basic}"))
        for i, (key, value) in enumerate(pairs):
            env[f"GIT_CONFIG_KEY_{i}"], env[f"GIT_CONFIG_VALUE_{i}"] = key, value
        env["GIT_CONFIG_COUNT"] = str(len(pairs))
        if self.config.ssh_key_file is not None:
            # git runs this through sh: every part is quoted, and all of it comes from config.
            parts = ["ssh", "-i", str(self.config.ssh_key_file), "-o", "IdentitiesOnly=yes"]
            parts += ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"]
            if self.config.known_hosts_file is not None:
                parts += ["-o", f"UserKnownHostsFile={self.config.known_hosts_file}"]
            env["GIT_SSH_COMMAND"] = " ".join(shlex.quote(p) for p in parts)
        return env

    def git(self, *args: str, binary: bool = False) -> str:
        """Run git on the clone; raises ``GitError`` with its last words (secrets masked)."""
        return self._run(["--git-dir", str(self.repo), *args], binary, args[0])

    def _run(self, args: list[str], binary: bool = False, what: str = "") -> str:
        what = what or args[0]
        program = shutil.which("git")
        if program is None:
            raise GitError("git is not installed where the worker runs")
        try:
            done = subprocess.run(
                [program, *args],
                env=self._env(),
                capture_output=True,
                timeout=TIMEOUT_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise GitError(f"git {what} took over {TIMEOUT_SECONDS:.0f}s") from None
        if done.returncode != 0:
            err = done.stderr.decode("utf-8", "replace").strip()
            if any(sign in err for sign in AUTH_FAILED):
                raise GitError(
                    f"git {what}: {self._where()} refused swarmbot's credentials "
                    "(git.token_file, git.ssh_key_file)"
                )
            if "Host key verification failed" in err:
                raise GitError(
                    f"git {what}: {self._where()}'s host key is not in git.known_hosts_file"
                )
            lines = err.splitlines()
            words = "; ".join(line for line in lines[-3:] if line) or f"exit {done.returncode}"
            raise GitError(masker().text(f"git {what}: {words}"))
        return done.stdout if binary else done.stdout.decode("utf-8", "replace")  # type: ignore[return-value]

    # -- the clone -----------------------------------------------------------------------

    def fetch(self) -> str:
        """Bring the clone up to date with the repository; returns the branch's head."""
        with self._lock:
            if not (self.repo / "HEAD").is_file():
                self.root.mkdir(parents=True, exist_ok=True)
                self._run(["init", "--quiet", "--bare", str(self.repo)])
            self.git(
                "fetch",
                "--quiet",
                "--prune",
                "--prune-tags",
                "--force",
                "--no-write-fetch-head",
                "--end-of-options",
                self.config.url,
                f"+refs/heads/*:{REMOTE}*",
                "+refs/tags/*:refs/tags/*",
            )
        return self.head()

    def head(self) -> str:
        """The branch's head as last fetched."""
        return self.resolve(self.config.branch)

    def ready(self) -> bool:
        return (self.repo / "HEAD").is_file()

    def resolve(self, ref: str) -> str:
        """The commit a ref names: a branch of the repository, a tag, or a commit (7-40
        hex digits); raises ``GitError`` saying which it is not."""
        if not GIT_REF.match(ref):
            raise GitError(f"`{ref}` is not a git ref")
        candidates = [f"{REMOTE}{ref}", f"refs/tags/{ref}"] + ([ref] if HEX.match(ref) else [])
        for name in candidates:
            try:
                return self.git(
                    "rev-parse", "--verify", "--quiet", "--end-of-options", f"{name}^{{commit}}"
                ).strip()
            except GitError:
                continue
        raise GitError(f"no branch, tag or commit `{ref}` in {self._where()}")

    def _where(self) -> str:
        return masker().text(re.sub(r"^[a-z]+://", "", self.config.url))

    def commit(self, sha: str) -> Commit:
        out = self.git("log", "-1", "--format=%H%x00%s%x00%an%x00%ct", "--end-of-options", sha)
        full, subject, author, when = out.rstrip("\n").split("\x00")
        return Commit(full, subject, author, int(when))

    def stack_paths(self, stack: str) -> list[str]:
        """The repository paths that make up a stack: its file and its override."""
        folder = f"{self.config.path}/" if self.config.path else ""
        return [f"{folder}{stack}.yaml", f"{folder}{stack}.override.yaml"]

    def log(self, since: str, until: str, stack: str | None = None) -> list[Commit]:
        """The commits after ``since`` up to ``until`` (newest first); with ``stack``, only
        those that changed its files."""
        paths = self.stack_paths(stack) if stack else []
        out = self.git(
            "log",
            "--format=%H%x00%s%x00%an%x00%ct",
            "--end-of-options",
            f"{since}..{until}",
            "--",
            *paths,
        )
        commits = []
        for line in out.splitlines():
            full, subject, author, when = line.split("\x00")
            commits.append(Commit(full, subject, author, int(when)))
        return commits

    def changed_stacks(self, old: str, new: str) -> dict[str, list[str]]:
        """The stacks whose files differ between two commits: stack -> "+a -d file" lines."""
        folder = self.config.path
        out = self.git("diff", "--numstat", "--end-of-options", old, new, "--", folder or ".")
        changed: dict[str, list[str]] = {}
        for line in out.splitlines():
            added, deleted, path = line.split("\t", 2)
            parent, _, name = path.rpartition("/")
            if parent != folder or not name.endswith(".yaml"):
                continue
            stack = name.removesuffix(".yaml").removesuffix(".override")
            if STACK_NAME.match(stack):
                changed.setdefault(stack, []).append(f"{name} +{added} -{deleted}")
        return changed

    # -- a commit's files ----------------------------------------------------------------

    def tree(self, sha: str) -> Path:
        """The stacks folder as it is at ``sha``, written out once and kept for reuse."""
        if not HEX.match(sha) or len(sha) != 40:
            raise GitError(f"not a full commit id: {sha}")
        folder = self.trees / sha
        with self._lock:
            if not folder.is_dir():
                self._write_tree(sha, folder)
            os.utime(folder)  # most recently used: kept longest
            self._forget_old_trees()
        return folder / self.config.path if self.config.path else folder

    def _write_tree(self, sha: str, folder: Path) -> None:
        prefix = f"{self.config.path}/" if self.config.path else ""
        try:
            data = self.git(
                "archive",
                "--format=tar",
                "--end-of-options",
                sha,
                prefix or ".",  # git archive takes no "--"; the path is config's, checked
                binary=True,
            )
        except GitError as exc:
            if "did not match any files" in str(exc):
                raise GitError(f"{sha[:7]} has no `{self.config.path}` folder") from None
            raise
        self.trees.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{sha[:7]}-", dir=self.trees))
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:  # type: ignore[arg-type]
            for member in tar.getmembers():
                parts = member.name.split("/")
                if not member.isfile() or ".." in parts or member.name.startswith("/"):
                    continue  # directories are made below; links and devices never
                target = tmp.joinpath(*parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                if source is not None:
                    target.write_bytes(source.read())
                    target.chmod(0o644)
        (tmp / (self.config.path or ".")).mkdir(parents=True, exist_ok=True)
        tmp.rename(folder)

    def _forget_old_trees(self) -> None:
        trees = sorted(
            (p for p in self.trees.iterdir() if p.is_dir() and not p.name.startswith(".")),
            key=lambda p: p.stat().st_mtime,
            reverse=True,
        )
        for old in trees[TREES_KEPT:]:
            shutil.rmtree(old, ignore_errors=True)
