"""Alertmanager's webhook receiver: ``POST <alerts.path>`` with a version-4 payload.

It lives in the bot process, at the edge with the chat adapters and the push webhook: the
worker stays unexposed. Each alert group is one message per room, edited as the group
changes (``bot.core.alerting.story``), with the last change to the service or stack it is
about; the messages travel by the adapters' own inboxes, like notices, so delivery is
retried per room and survives a bot restart.

Answers: 200 for a delivery taken; 401 for missing or wrong credentials (Alertmanager's
``http_config``: a bearer token or basic auth); 400 for a body that is not a version-4
payload; 413 over ``MAX_BODY``; 404/405 for another path or method; 503 when Redis is down
(Alertmanager retries). Refusals are audited, at most 20 a minute from one address.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from bot.core.alerting import story as stories
from bot.core.alerting import ties, wording
from bot.core.alerting.matchers import matches_all
from bot.core.alerting.payload import BadPayload, Group, parse
from bot.core.config import AlertRoute, AlertsConfig, Config
from bot.core.httpserve import BoundedServer, RefusalBudget, json_app, serve_in_thread
from bot.core.wire import Result
from bot.queue.alertstore import AlertStore
from bot.queue.errors import StoreError

log = logging.getLogger("swarmbot.alerts")
MAX_BODY = 1024 * 1024  # 500 alerts with their labels fit in well under this
LOCKS = 64


class AlertReceiver:
    def __init__(
        self, config: Config, store: AlertStore, clock: Callable[[], float] = time.time
    ) -> None:
        assert config.alerts is not None
        self.alerts: AlertsConfig = config.alerts
        self.adapters = config.adapters
        self.store = store
        self.clock = clock
        self._refusals = RefusalBudget(20)
        # One delivery of a group at a time (Alertmanager may retry while one is handled).
        self._locks = [threading.Lock() for _ in range(LOCKS)]
        # Held by a delivery that places a group in a room (its own message or a fold)
        # until its tell is written: two groups folded at once would otherwise be
        # delivered out of count order, and the fold's headline end on the smaller count.
        self._new_messages = threading.Lock()

    def handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes, peer: str
    ) -> tuple[int, dict[str, Any]]:
        if path != self.alerts.path:
            return 404, {"error": "not found"}
        if method != "POST":
            return 405, {"error": "POST Alertmanager's webhook here"}
        if not self._authorized(headers.get("authorization", "")):
            self._refused(peer, "bad or missing credentials")
            return 401, {"error": "bad or missing credentials"}
        try:
            group = parse(body)
        except BadPayload as exc:
            self._refused(peer, f"bad payload: {exc}")
            return 400, {"error": str(exc)}
        told = self.take(group)
        return 200, {"ok": True, "messages": told}

    def _authorized(self, header: str) -> bool:
        scheme, _, value = header.partition(" ")
        if self.alerts.token is not None and scheme.lower() == "bearer":
            return hmac.compare_digest(value.strip().encode(), self.alerts.token.reveal())
        if self.alerts.password is not None and scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value.strip()).partition(b":")
            except (binascii.Error, ValueError):
                return False
            same_user = hmac.compare_digest(user, self.alerts.username.encode())
            return hmac.compare_digest(password, self.alerts.password.reveal()) and same_user
        return False

    def _refused(self, peer: str, reason: str) -> None:
        log.warning("alert delivery from %s refused: %s", peer, reason)
        if not self._refusals.may_audit(peer):
            return
        self.store.audit(
            {
                "who": "alertmanager",
                "platform": "alerts",
                "where": peer,
                "command": "alert delivery",
                "decision": "refused",
                "reason": reason,
            }
        )

    # -- one group's story ----------------------------------------------------------------

    def take(self, group: Group) -> int:
        """Tell one delivery of ``group`` in its rooms; the number of messages queued."""
        now = self.clock()
        lock = self._locks[int(hashlib.sha256(group.key.encode()).hexdigest(), 16) % LOCKS]
        with lock:
            step = stories.advance(
                self.store.story(group.key), group, now, self.alerts.flap_seconds
            )
            head = wording.head(group, step.story, now)
            detail = wording.lines(group, self._tie(group, now))
            status = "failed" if group.status == "firing" else "info"
            places = {} if step.new_message else dict(step.story.places)
            targets = self.targets(group)
            placing = any(_where(t) not in places for t in targets)
            results = []
            with self._new_messages if placing else contextlib.nullcontext():
                for target in targets:
                    where = _where(target)
                    message = places.get(where)
                    if message is None:  # a new message in this room (or a place in its fold)
                        message, over = self._new_message(group, step, where, now)
                        places[where] = message
                        data = self._fold(over, head) if over else self._whole(head, detail, ())
                    elif message.startswith("fold-"):  # folded before: its news in the thread
                        data = {"text": "", "detail": [], "status": status, "thread": [head]}
                    else:
                        data = self._whole(head, detail, step.thread)
                    data["status"] = status
                    results.append(_result(target, message, data))
                self.store.tell(group.key, replace(step.story, places=places), results)
        log.info("alert group %s: %s (%d messages)", group.key[:60], group.status, len(results))
        return len(results)

    def _new_message(
        self, group: Group, step: stories.Step, where: str, now: float
    ) -> tuple[str, int]:
        """The message a group gets in a room: its own, or (over the room's limit of new
        messages in a minute) the current fold, which lists it in its thread; and how many
        groups that fold holds now (0: its own message)."""
        if self.store.new_message(where, now) <= self.alerts.new_messages_per_minute:
            return stories.message_id(group.key, step.story.gen), 0
        return self.store.fold(where, now)

    @staticmethod
    def _whole(head: str, detail: tuple[str, ...], thread: tuple[str, ...]) -> dict[str, Any]:
        return {"text": head, "detail": list(detail), "thread": list(thread)}

    def _fold(self, count: int, head: str) -> dict[str, Any]:
        text = (
            f"{count} more alert group{'s' if count != 1 else ''} within a minute, over this "
            f"room's {self.alerts.new_messages_per_minute} new messages a minute: folded "
            "into this one, each told in its thread"
        )
        return {"text": text, "detail": [], "thread": [head]}

    def _tie(self, group: Group, now: float) -> str:
        about = ties.subjects(
            [group.common_labels, *(a.labels for a in group.alerts)],
            self.alerts.service_labels,
            self.alerts.stack_labels,
        )
        changes = [c for c in self.store.last_changes(about.stacks) if c.at <= now]
        if not changes:
            return ""
        last = max(changes, key=lambda c: c.at)
        return ties.tie_line(last, about, group.since, now)

    def targets(self, group: Group) -> list[dict[str, str]]:
        """The rooms of every route whose matchers all match the group's common labels, or
        the default rooms when none does; only on platforms this bot serves."""
        labels = group.common_labels or group.group_labels
        routes = [r for r in self.alerts.routes if matches_all(r.matchers, labels)]
        chosen: list[AlertRoute] = routes or [self.alerts.default]
        out: dict[str, dict[str, str]] = {}
        for route in chosen:
            if "matrix" in self.adapters:
                for room in route.matrix:
                    out[f"matrix:{room}"] = {"inbox": "matrix", "room": room}
            if "slack" in self.adapters:
                for channel in route.slack:
                    out[f"slack:{channel}"] = {"inbox": "slack", "channel": channel}
        return list(out.values())

    def wsgi(self) -> Callable[..., list[bytes]]:
        return json_app(self.handle, MAX_BODY, _unavailable)


def _where(target: dict[str, str]) -> str:
    return f"{target['inbox']}:{target.get('room') or target.get('channel')}"


def _result(target: dict[str, str], message: str, data: dict[str, Any]) -> Result:
    digest = hashlib.sha256(repr((message, sorted(data.items()))).encode()).hexdigest()[:16]
    return Result("notice", "0", "notice", True, {**data, "id": digest, "story": message}, target)


def _unavailable(exc: Exception) -> tuple[int, dict[str, Any]]:
    if not isinstance(exc, StoreError):
        raise exc
    log.warning("alerts: redis unavailable: %s", exc)
    return 503, {"error": "queue unavailable; Alertmanager retries"}


def serve(config: Config, store: AlertStore) -> BoundedServer:
    """Serve the receiver in a bounded pool of threads; returns the server (its port)."""
    assert config.alerts is not None
    receiver = AlertReceiver(config, store)
    section = config.alerts
    return serve_in_thread(
        "alert receiver", section.host, section.port, section.path, receiver.wsgi()
    )
