"""Push webhooks from Gitea/Forgejo, GitLab and GitHub: is this delivery genuine, fresh and
new? Pure functions; the HTTP endpoint is ``bot.chat.webhook``.

Each forge proves a delivery its own way, and each is checked its own way:

- GitHub: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>``;
- Gitea and Forgejo: ``X-Gitea-Signature`` / ``X-Forgejo-Signature``: the same HMAC, hex;
- GitLab: ``X-Gitlab-Token``, the shared secret itself (GitLab signs nothing).

Compared in constant time. None of them signs a delivery time or its delivery ID (a
header), so freshness and replay are judged on the signed body: a push whose newest
commit is older than ``max_age`` is *stale*, and the digest of a body already taken is a
*replay* (remembered for longer than ``max_age``, so every replay is one or the other).
A push made only of old commits (a branch reset to last week) is refused as stale; the
watcher's polling still finds it.

Whatever a delivery says, it is only a wake-up call: the worker fetches and reads what
changed from git itself. A forged push that got through could cause a fetch, no more.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

MAX_BODY = 5 * 1024 * 1024  # GitHub caps payloads at 25 MB; a push to a stacks repo is small


class Refused(Exception):
    """A delivery refused (401): ``reason`` is a fixed phrase for the audit trail."""

    def __init__(self, reason: str, forge: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.forge = forge


@dataclass(frozen=True)
class Delivery:
    forge: str  # github, gitea, forgejo, gitlab
    event: str  # push, ping, ...
    ref: str  # refs/heads/main ("" for events that are not pushes)
    after: str  # the new head ("" when not said)
    newest: float | None  # the newest commit's time in the push, Unix seconds
    digest: str  # of the body: what a replay repeats

    @property
    def branch(self) -> str:
        return self.ref.removeprefix("refs/heads/") if self.ref.startswith("refs/heads/") else ""


def _hmac_hex(secret: bytes, body: bytes) -> str:
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def _same(given: str, wanted: str) -> bool:
    return hmac.compare_digest(given.strip().lower().encode(), wanted.lower().encode())


def verify(
    headers: Mapping[str, str], body: bytes, secret: bytes, now: float, max_age: float
) -> Delivery:
    """The delivery, if it is genuine and fresh; raises ``Refused``. ``headers`` with
    lower-case names. The replay check needs Redis: the caller does it with ``digest``."""
    h = {k.lower(): v for k, v in headers.items()}
    if h.get("x-forgejo-event") or h.get("x-forgejo-signature"):
        forge, event = "forgejo", h.get("x-forgejo-event", "")
        given = h.get("x-forgejo-signature") or h.get("x-gitea-signature", "")
        ok = bool(given) and _same(given, _hmac_hex(secret, body))
    elif h.get("x-gitea-event") or h.get("x-gitea-signature"):
        forge, event = "gitea", h.get("x-gitea-event", "")
        given = h.get("x-gitea-signature", "")
        ok = bool(given) and _same(given, _hmac_hex(secret, body))
    elif h.get("x-github-event") or h.get("x-hub-signature-256"):
        forge, event = "github", h.get("x-github-event", "")
        given = h.get("x-hub-signature-256", "")
        ok = given.startswith("sha256=") and _same(given[7:], _hmac_hex(secret, body))
    elif h.get("x-gitlab-event") or h.get("x-gitlab-token"):
        forge, event = "gitlab", h.get("x-gitlab-event", "")
        ok = hmac.compare_digest(h.get("x-gitlab-token", "").encode(), secret)
        event = "push" if event == "Push Hook" else event.lower()
    else:
        raise Refused("no signature or token header of a known forge")
    if not ok:
        raise Refused("bad signature or token", forge)
    try:
        payload = json.loads(body)
    except ValueError:
        raise Refused("signed, but not JSON", forge) from None
    if not isinstance(payload, dict):
        raise Refused("signed, but not a JSON object", forge)
    newest = _newest_commit_time(payload)
    if newest is not None and now - newest > max_age:
        raise Refused(f"stale: its newest commit is {int((now - newest) // 60)} min old", forge)
    return Delivery(
        forge=forge,
        event=event,
        ref=str(payload.get("ref") or ""),
        after=str(payload.get("after") or payload.get("checkout_sha") or ""),
        newest=newest,
        digest=hashlib.sha256(body).hexdigest(),
    )


def _newest_commit_time(payload: dict[str, Any]) -> float | None:
    """The newest commit timestamp in a push (GitHub, Gitea and Forgejo send
    ``head_commit`` and ``commits``, GitLab ``commits``): ISO 8601 with an offset."""
    commits = list(payload.get("commits") or [])
    if isinstance(payload.get("head_commit"), dict):
        commits.append(payload["head_commit"])
    times = []
    for commit in commits:
        stamp = commit.get("timestamp") if isinstance(commit, dict) else None
        if isinstance(stamp, str):
            try:
                times.append(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp())
            except ValueError:
                continue
    return max(times) if times else None
