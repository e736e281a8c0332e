"""Real servers for the stacks-from-git tests: a git repository served by ``git daemon``
(the worker clones and fetches it over git://, the tests push to it the same way), whose
post-receive hook sends a push webhook signed as a forge signs it; and a real registry
(Debian's ``docker-registry``)."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import subprocess
import sys
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TypeVar

import requests

from tests.harness import free_port, wait_until

HOOK = r'''#!PYTHON
"""post-receive: what a forge does after a push: POST a push webhook, signed its way."""
import hashlib, hmac, json, subprocess, sys, urllib.request
from datetime import datetime, timezone

conf = json.load(open(sys.argv[0] + ".json"))
for line in sys.stdin:
    old, new, ref = line.split()
    span = f"{old}..{new}" if set(old) != {"0"} else new
    log = subprocess.run(
        ["git", "log", "--format=%H%x00%an%x00%cI%x00%s", span],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()
    commits = [dict(zip(("id", "author", "timestamp", "message"), c.split("\x00"))) for c in log]
    body = {"ref": ref, "before": old, "after": new, "commits": commits,
            "repository": {"full_name": "ops/infra"}}
    if conf["forge"] != "gitlab":
        body["head_commit"] = commits[0] if commits else None
    data = json.dumps(body).encode()
    sig = hmac.new(conf["secret"].encode(), data, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json"}
    if conf["forge"] == "github":
        headers.update({"X-GitHub-Event": "push", "X-GitHub-Delivery": new[:8],
                        "X-Hub-Signature-256": "sha256=" + sig})
    elif conf["forge"] == "gitlab":
        headers.update({"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": conf["secret"]})
    else:  # gitea and forgejo send both
        headers.update({"X-Gitea-Event": "push", "X-Gitea-Delivery": new[:8],
                        "X-Gitea-Signature": sig})
    open(sys.argv[0] + ".last", "wb").write(data)
    req = urllib.request.Request(conf["url"], data=data, headers=headers, method="POST")
    try:
        status = urllib.request.urlopen(req, timeout=10).status
    except urllib.error.HTTPError as exc:
        status = exc.code
    open(sys.argv[0] + ".status", "a").write(f"{status}\n")
'''


S = TypeVar("S", bound="_Served")


class _Served:
    """``with Server(...) as s``: started, and stopped however the block ends."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self: S) -> S:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class GitServer(_Served):
    """A bare repository served by ``git daemon`` on a free loopback port, and a working
    clone the tests commit in, as different authors."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bare = root / "srv" / "infra.git"
        self.work = root / "work"
        self.port = free_port()
        self.url = f"git://127.0.0.1:{self.port}/infra.git"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.bare.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(self.bare)], check=True)
        self.proc = subprocess.Popen(
            [
                "git",
                "daemon",
                "--reuseaddr",
                "--export-all",
                "--enable=receive-pack",
                f"--base-path={self.bare.parent}",
                "--listen=127.0.0.1",
                f"--port={self.port}",
                str(self.bare.parent),
            ],
            stdout=subprocess.DEVNULL,
            stderr=(self.root / "daemon.log").open("ab"),
        )
        wait_until(self._answers, 10, "git daemon to answer")
        subprocess.run(["git", "init", "-q", "-b", "main", str(self.work)], check=True)
        self.git("remote", "add", "origin", self.url)

    def _answers(self) -> bool:
        done = subprocess.run(["git", "ls-remote", self.url], capture_output=True)
        return done.returncode == 0

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)

    def git(self, *args: str, author: str = "Alice") -> str:
        env = {
            "GIT_AUTHOR_NAME": author,
            "GIT_AUTHOR_EMAIL": f"{author.lower()}@example.org",
            "GIT_COMMITTER_NAME": author,
            "GIT_COMMITTER_EMAIL": f"{author.lower()}@example.org",
            "PATH": "/usr/bin:/bin:/usr/local/bin",
            "HOME": str(self.root),
        }
        done = subprocess.run(
            ["git", "-C", str(self.work), *args], capture_output=True, text=True, env=env
        )
        if done.returncode != 0:
            raise AssertionError(f"git {' '.join(args)}: {done.stderr}")
        return done.stdout.strip()

    def commit(self, files: dict[str, str], message: str, author: str) -> str:
        """Write ``files`` (path -> text), commit them as ``author``, push; the new sha."""
        for path, text in files.items():
            target = self.work / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            self.git("add", path)
        self.git("commit", "-q", "-m", message, author=author)
        self.git("push", "-q", "origin", "main", author=author)
        return self.git("rev-parse", "HEAD")

    def remove(self, path: str, message: str, author: str) -> str:
        self.git("rm", "-q", path)
        self.git("commit", "-q", "-m", message, author=author)
        self.git("push", "-q", "origin", "main", author=author)
        return self.git("rev-parse", "HEAD")

    def hook(self, url: str, secret: str, forge: str) -> None:
        """Install the post-receive hook that posts ``forge``'s push webhook to ``url``."""
        hook = self.bare / "hooks" / "post-receive"
        hook.write_text(HOOK.replace("PYTHON", sys.executable, 1))
        hook.chmod(0o755)
        Path(f"{hook}.json").write_text(json.dumps({"url": url, "secret": secret, "forge": forge}))

    def last_delivery(self) -> bytes:
        return (self.bare / "hooks" / "post-receive.last").read_bytes()

    def hook_statuses(self) -> list[int]:
        path = self.bare / "hooks" / "post-receive.status"
        return [int(s) for s in path.read_text().split()] if path.exists() else []


class Registry(_Served):
    """Debian's docker-registry on a free loopback port (dockerd trusts 127.0.0.0/8 as an
    insecure registry by default, so ``docker push`` needs nothing more)."""

    def __init__(self, root: Path, htpasswd: Path | None = None) -> None:
        self.root = root
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.htpasswd = htpasswd  # HTTP Basic auth (bcrypt entries), as a private registry
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        config = self.root / "registry.yml"
        config.write_text(
            textwrap.dedent(
                f"""
                version: 0.1
                log: {{level: error}}
                storage: {{filesystem: {{rootdirectory: {self.root / "data"}}}}}
                http: {{addr: {self.addr}}}
                """
            )
            + (
                f"auth: {{htpasswd: {{realm: test, path: {self.htpasswd}}}}}\n"
                if self.htpasswd
                else ""
            )
        )
        self.proc = subprocess.Popen(
            ["docker-registry", "serve", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=(self.root / "registry.log").open("ab"),
        )
        wait_until(self._answers, 15, "the registry to answer")

    def _answers(self) -> bool:
        try:
            return requests.get(f"http://{self.addr}/v2/", timeout=1).status_code in (200, 401)
        except requests.RequestException:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)

    def digest(self, repo: str, tag: str) -> str:
        answer = requests.head(
            f"http://{self.addr}/v2/{repo}/manifests/{tag}",
            headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
            timeout=5,
        )
        return answer.headers["Docker-Content-Digest"]


class HttpGitServer(_Served):
    """The same bare repository over smart HTTP: ``git http-backend`` (git's own CGI)
    behind a small threaded HTTP server that wants HTTP Basic auth with one token, as a
    forge does for a token over HTTPS."""

    def __init__(self, bare: Path, user: str, token: str) -> None:
        self.bare = bare
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/{bare.name}"
        self.wanted = "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()
        self.seen_auth: list[str] = []  # the Authorization headers received
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self._cgi()

            def do_POST(self) -> None:
                self._cgi()

            def _cgi(self) -> None:
                auth = self.headers.get("Authorization", "")
                outer.seen_auth.append(auth)
                if auth != outer.wanted:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="git"')
                    self.end_headers()
                    return
                path, _, query = self.path.partition("?")
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                env = {
                    "GIT_PROJECT_ROOT": str(outer.bare.parent),
                    "GIT_HTTP_EXPORT_ALL": "1",
                    "PATH_INFO": path,
                    "QUERY_STRING": query,
                    "REQUEST_METHOD": self.command,
                    "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                    "CONTENT_LENGTH": str(len(body)),
                    "REMOTE_USER": "git",
                    "PATH": "/usr/bin:/bin",
                }
                done = subprocess.run(
                    ["git", "http-backend"], input=body, capture_output=True, env=env
                )
                head, _, payload = done.stdout.partition(b"\r\n\r\n")
                headers = [h.split(": ", 1) for h in head.decode().split("\r\n") if ": " in h]
                status = next((int(v.split()[0]) for k, v in headers if k == "Status"), 200)
                self.send_response(status)
                for key, value in headers:
                    if key != "Status":
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


class SshGitServer(_Served):
    """The same bare repository over SSH: an sshd of the test's own on a free loopback port,
    with its own host key, taking one client key (as a forge takes a deploy key)."""

    def __init__(self, root: Path, bare: Path) -> None:
        self.root = root
        self.bare = bare
        self.port = free_port()
        self.url = f"ssh://root@127.0.0.1:{self.port}{bare}"
        self.client_key = root / "deploy_key"
        self.known_hosts = root / "known_hosts"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        host_key = self.root / "host_key"
        for key in (host_key, self.client_key):
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True
            )
        authorized = self.root / "authorized_keys"
        authorized.write_text(Path(f"{self.client_key}.pub").read_text())
        host_pub = " ".join(Path(f"{host_key}.pub").read_text().split()[:2])
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {host_pub}\n")
        config = self.root / "sshd_config"
        config.write_text(
            textwrap.dedent(
                f"""
                Port {self.port}
                ListenAddress 127.0.0.1
                HostKey {host_key}
                AuthorizedKeysFile {authorized}
                PasswordAuthentication no
                KbdInteractiveAuthentication no
                PermitRootLogin prohibit-password
                UsePAM no
                StrictModes no
                PidFile {self.root / "sshd.pid"}
                """
            )
        )
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
        self.proc = subprocess.Popen(
            ["/usr/sbin/sshd", "-D", "-f", str(config), "-E", str(self.root / "sshd.log")]
        )
        wait_until(self._answers, 10, "sshd to answer")

    def _answers(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 1):
            return True
        return False

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
