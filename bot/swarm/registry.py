"""What a tag points to in its registry, read with as few requests as the registry allows.

The Registry HTTP API v2 (the OCI distribution spec), spoken with ``requests`` (docker-py's
own HTTP library; docker-py itself can only ask the daemon, ``/distribution/<name>/json``,
which costs a full manifest GET each time and has no cache or conditional request):

- one ``HEAD /v2/<repo>/manifests/<tag>`` per image reference, never one per service: the
  digest is in ``Docker-Content-Digest``; Docker Hub does not count HEADs against its pull
  limit;
- sent with ``If-None-Match: "<digest>"`` once a digest is known: a registry that supports
  it answers 304 with no body;
- answers kept ``cache_seconds``: within that, a check costs nothing;
- bearer tokens (``WWW-Authenticate: Bearer realm=...``) fetched once per repository and
  kept until they expire; credentials read from a Docker ``config.json`` (a Docker secret).

``self.requests`` counts every HTTP request made, for the budget ``!updates`` reports.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from bot.core.config import RegistryConfig

log = logging.getLogger("swarmbot.registry")

ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
    ]
)
DOCKER_HUB = "registry-1.docker.io"
TIMEOUT = (3.05, 10)
TAGS_MAX = 1000
SEMVER = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)$")


class RegistryError(Exception):
    """The registry could not be asked or refused; safe for chat."""


@dataclass(frozen=True)
class ImageRef:
    """``127.0.0.1:5000/team/app:1.2@sha256:...`` in its parts."""

    host: str  # registry host[:port]
    repo: str  # team/app (library/app on Docker Hub)
    tag: str
    digest: str  # the digest pinned in the service spec, if any

    @property
    def name(self) -> str:
        """How the image is written without its digest: the key for one lookup."""
        host = "" if self.host == DOCKER_HUB else f"{self.host}/"
        repo = self.repo.removeprefix("library/") if not host else self.repo
        return f"{host}{repo}:{self.tag}"

    @classmethod
    def parse(cls, image: str) -> ImageRef:
        name, _, digest = image.partition("@")
        first, _, rest = name.partition("/")
        if rest and ("." in first or ":" in first or first == "localhost"):
            host, path = first, rest
        else:
            host, path = DOCKER_HUB, name
        tag = "latest"
        if ":" in path:  # the host, and its port, are split off already
            path, _, tag = path.rpartition(":")
        if host == DOCKER_HUB and "/" not in path:
            path = f"library/{path}"
        return cls(host, path, tag, digest)


def semver_newer(tags: list[str], current: str, level: str) -> str:
    """The newest tag above ``current`` that ``level`` allows (patch: same major.minor,
    minor: same major, major: any), or ""; tags that are not x.y.z are ignored."""
    now = SEMVER.match(current)
    if not now or not level:
        return ""
    have = tuple(int(x) for x in now.groups())
    best: tuple[tuple[int, int, int], str] | None = None
    for tag in tags:
        m = SEMVER.match(tag)
        if not m:
            continue
        v = (int(m[1]), int(m[2]), int(m[3]))
        if v <= have:
            continue
        if (level == "patch" and v[:2] != have[:2]) or (level == "minor" and v[0] != have[0]):
            continue
        if best is None or v > best[0]:
            best = (v, tag)
    return best[1] if best else ""


class Registry:
    def __init__(self, config: RegistryConfig) -> None:
        self.config = config
        self.session = requests.Session()
        self.requests = 0
        self._lock = threading.Lock()
        self._digests: dict[str, tuple[float, str]] = {}  # name -> (fetched at, digest)
        self._tags: dict[str, tuple[float, list[str]]] = {}
        self._tokens: dict[tuple[str, str], tuple[float, str]] = {}  # (host, repo) -> token

    # -- reading -------------------------------------------------------------------------

    def digest(self, ref: ImageRef) -> str:
        """The digest ``ref``'s tag points to now (cached ``cache_seconds``)."""
        now = time.monotonic()
        with self._lock:
            cached = self._digests.get(ref.name)
        if cached and now - cached[0] < self.config.cache_seconds:
            return cached[1]
        headers = {"Accept": ACCEPT}
        if cached:
            headers["If-None-Match"] = f'"{cached[1]}"'
        url = f"{self._base(ref.host)}/v2/{ref.repo}/manifests/{ref.tag}"
        answer = self._call("HEAD", ref, url, headers)
        if answer.status_code == 304 and cached:
            digest = cached[1]
        elif answer.status_code == 200 and answer.headers.get("Docker-Content-Digest"):
            digest = answer.headers["Docker-Content-Digest"]
        elif answer.status_code == 404:
            raise RegistryError(f"{ref.name}: no such tag in {ref.host}")
        else:
            raise RegistryError(f"{ref.name}: {ref.host} answered {answer.status_code}")
        with self._lock:
            self._digests[ref.name] = (now, digest)
        return digest

    def tags(self, ref: ImageRef) -> list[str]:
        """The repository's tags (cached ``cache_seconds``; one request per 1000 tags)."""
        key = f"{ref.host}/{ref.repo}"
        now = time.monotonic()
        with self._lock:
            cached = self._tags.get(key)
        if cached and now - cached[0] < self.config.cache_seconds:
            return cached[1]
        tags: list[str] = []
        url: str | None = f"{self._base(ref.host)}/v2/{ref.repo}/tags/list?n={TAGS_MAX}"
        while url and len(tags) < 10 * TAGS_MAX:
            answer = self._call("GET", ref, url, {"Accept": "application/json"})
            if answer.status_code != 200:
                raise RegistryError(f"{key}: tags: {ref.host} answered {answer.status_code}")
            tags += answer.json().get("tags") or []
            link = re.match(r'<([^>]+)>;\s*rel="next"', answer.headers.get("Link", ""))
            url = f"{self._base(ref.host)}{link[1]}" if link else None
        with self._lock:
            self._tags[key] = (now, tags)
        return tags

    # -- HTTP ------------------------------------------------------------------------------

    def _base(self, host: str) -> str:
        loopback = host.split(":")[0] in ("127.0.0.1", "localhost", "::1")
        scheme = "http" if loopback or host in self.config.insecure else "https"
        return f"{scheme}://{host}"

    def _call(
        self, method: str, ref: ImageRef, url: str, headers: dict[str, str]
    ) -> requests.Response:
        token = self._tokens.get((ref.host, ref.repo))
        if token and token[0] > time.monotonic():
            headers = {**headers, "Authorization": f"Bearer {token[1]}"}
        answer = self._send(method, url, headers)
        if answer.status_code == 401:
            auth = self._authorize(ref, answer.headers.get("WWW-Authenticate", ""))
            if not auth:
                raise RegistryError(
                    f"{ref.name}: {ref.host} wants credentials (registry.credentials_file)"
                )
            answer = self._send(method, url, {**headers, "Authorization": auth})
            if answer.status_code == 401:
                raise RegistryError(f"{ref.name}: {ref.host} refused the credentials")
        return answer

    def _send(self, method: str, url: str, headers: dict[str, str]) -> requests.Response:
        self.requests += 1
        try:
            return self.session.request(
                method, url, headers=headers, timeout=TIMEOUT, allow_redirects=True
            )
        except requests.RequestException as exc:
            host = url.split("/")[2]
            raise RegistryError(f"{host} unreachable: {type(exc).__name__}") from None

    def _authorize(self, ref: ImageRef, challenge: str) -> str:
        """The Authorization header a 401's challenge asks for, or "" (none possible)."""
        basic = self._credentials(ref.host)
        if challenge.lower().startswith("basic"):
            return f"Basic {basic}" if basic else ""
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = params.get("realm", "")
        if not challenge.lower().startswith("bearer") or not realm.startswith("http"):
            return ""
        query = {"service": params.get("service", ""), "scope": f"repository:{ref.repo}:pull"}
        headers = {"Authorization": f"Basic {basic}"} if basic else {}
        self.requests += 1
        try:
            answer = self.session.get(realm, params=query, headers=headers, timeout=TIMEOUT)
        except requests.RequestException as exc:
            raise RegistryError(f"{ref.host}: token service: {type(exc).__name__}") from None
        if answer.status_code != 200:
            raise RegistryError(f"{ref.host}: token service answered {answer.status_code}")
        body = answer.json()
        token = body.get("token") or body.get("access_token") or ""
        lifetime = float(body.get("expires_in") or 60)
        self._tokens[(ref.host, ref.repo)] = (time.monotonic() + lifetime - 5, token)
        return f"Bearer {token}"

    def _credentials(self, host: str) -> str:
        """``base64(user:password)`` for ``host`` from the Docker config.json, or ""."""
        path: Path | None = self.config.credentials_file
        if path is None:
            return ""
        try:
            auths = json.loads(path.read_text(encoding="utf-8")).get("auths") or {}
        except (OSError, ValueError) as exc:
            log.warning("registry credentials unreadable: %s", type(exc).__name__)
            return ""
        names = [host, f"https://{host}", f"http://{host}"]
        if host == DOCKER_HUB:
            names += ["https://index.docker.io/v1/", "docker.io", "index.docker.io"]
        for name in names:
            entry = auths.get(name) or {}
            if entry.get("auth"):
                return str(entry["auth"])
            if entry.get("username") and entry.get("password"):
                raw = f"{entry['username']}:{entry['password']}".encode()
                return base64.b64encode(raw).decode()
        return ""
