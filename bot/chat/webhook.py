"""The push webhook endpoint: ``POST <webhook.path>`` from Gitea/Forgejo, GitLab or GitHub.

It lives in the bot process, at the edge with the chat adapters: the worker, which holds
the Docker socket, is never exposed to the network. A genuine, fresh, new push to the
watched branch wakes the worker's source watcher (a word on a Redis list) and gets 202;
everything else is answered without waking anything:

- 401 for a bad signature or token, a stale push, or a replayed one, each with an entry in
  the audit trail (``!audit`` shows them; at most 20 a minute from one address, so that a
  flood cannot push real entries out), and nothing else done;
- 200 for a verified ping or a push to another branch (told, and ignored);
- 404 for another path, 405 for another method, 413 for a body over 5 MB.

A WSGI server with bounded threads, a cap on open connections and a deadline per request
(``bot.core.httpserve``): one endpoint needs no web framework, but it faces the network.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from bot.core.config import Config, WebhookConfig
from bot.core.httpserve import BoundedServer, RefusalBudget, json_app, serve_in_thread
from bot.core.pushes import MAX_BODY, Refused, verify
from bot.queue.errors import StoreError
from bot.queue.pushstore import PushStore

log = logging.getLogger("swarmbot.webhook")
REFUSALS_AUDITED = 20  # per peer and minute


class PushEndpoint:
    def __init__(self, config: Config, store: PushStore) -> None:
        assert config.webhook is not None and config.git is not None
        self.hook: WebhookConfig = config.webhook
        self.branch = config.git.branch
        self.store = store
        self._refusals = RefusalBudget(REFUSALS_AUDITED)

    def handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes, peer: str
    ) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON answer) for one request."""
        if path != self.hook.path:
            return 404, {"error": "not found"}
        if method != "POST":
            return 405, {"error": "POST a push webhook here"}
        try:
            delivery = verify(
                headers, body, self.hook.secret.reveal(), time.time(), self.hook.max_age_seconds
            )
        except Refused as exc:
            self._audit(exc.forge or "unknown", peer, "-", "refused", exc.reason)
            log.warning("webhook from %s refused: %s", peer, exc.reason)
            return 401, {"error": exc.reason}
        what = f"{delivery.event} {delivery.ref} {delivery.after[:12]}".strip()
        # Remembered past max_age: any replay is either seen here or stale.
        ttl = self.hook.max_age_seconds + 3600
        if not self.store.first_delivery(delivery.digest, ttl):
            self._audit(
                delivery.forge, peer, what, "refused", "replayed: this delivery was taken before"
            )
            log.warning("webhook from %s refused: replayed", peer)
            return 401, {"error": "replayed: this delivery was taken before"}
        if delivery.event != "push":
            self._audit(
                delivery.forge, peer, what, "ignored", f"{delivery.event or 'unknown'} event"
            )
            return 200, {"ok": True, "ignored": f"{delivery.event or 'unknown'} event"}
        if delivery.branch != self.branch:
            self._audit(
                delivery.forge, peer, what, "ignored", f"not the watched branch {self.branch}"
            )
            return 200, {"ok": True, "ignored": f"not the watched branch {self.branch}"}
        self.store.wake(
            delivery.after or "push", self._fields(delivery.forge, peer, what, "accepted", "")
        )
        log.info(
            "webhook: %s push to %s (%s) accepted",
            delivery.forge,
            delivery.branch,
            delivery.after[:7],
        )
        return 202, {"ok": True, "accepted": delivery.after}

    def _fields(
        self, forge: str, peer: str, what: str, decision: str, reason: str
    ) -> dict[str, Any]:
        return {
            "who": f"webhook:{forge}",
            "platform": "webhook",
            "where": peer,
            "command": what,
            "decision": decision,
            "reason": reason,
        }

    def _audit(self, forge: str, peer: str, what: str, decision: str, reason: str) -> None:
        if decision == "refused" and not self._refusals.may_audit(peer):
            log.warning(
                "webhook refusal from %s not audited (over %d a minute)", peer, REFUSALS_AUDITED
            )
            return
        self.store.audit(self._fields(forge, peer, what, decision, reason))

    def wsgi(self) -> Callable[..., list[bytes]]:
        return json_app(self.handle, MAX_BODY, _unavailable)


def _unavailable(exc: Exception) -> tuple[int, dict[str, Any]]:
    if not isinstance(exc, StoreError):
        raise exc
    log.warning("webhook: redis unavailable: %s", exc)
    return 503, {"error": "queue unavailable; the forge retries"}


def serve(config: Config, store: PushStore) -> BoundedServer:
    """Serve the endpoint in a bounded pool of threads; returns the server (its port)."""
    assert config.webhook is not None
    endpoint = PushEndpoint(config, store)
    section = config.webhook
    return serve_in_thread(
        "push webhook", section.host, section.port, section.path, endpoint.wsgi()
    )
