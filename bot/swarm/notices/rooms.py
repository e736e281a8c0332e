"""Posting notices where config routes them, and the claims and markers by which the bot's
own jobs tell their changes themselves (kept by ``bot.queue.noticestore``)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Collection, Iterable
from typing import Any

from bot.core.config import Config
from bot.core.health import NOTICES
from bot.core.noticeroutes import targets
from bot.core.wire import Result
from bot.queue.consumer import Batch, WorkerQueue
from bot.swarm.notices.decide import summarize

log = logging.getLogger("swarmbot.notices")


class Notices:
    """Sends a notice to every chat room or channel routed for a stack."""

    def __init__(self, config: Config, queue: WorkerQueue) -> None:
        self.config = config
        self.queue = queue
        self.store = queue.notice_store(config.signing_secret)

    def post(
        self,
        stack: str,
        text: str,
        detail: list[str],
        key: str,
        status: str = "info",
        *,
        job: str = "0",
        origin: dict[str, str] | None = None,
        pipe: Batch | None = None,
        story: str = "",
    ) -> int:
        """Queue the notice for every routed room. A job's notice carries the job and where
        its command was said (``origin``), so a notice that cannot be posted is told there.
        With ``pipe``, the notice is posted when the caller's transaction is. Notices of
        one ``story`` are one message, posted first and edited after."""
        sent = 0
        text = self.config.tag(self.config.swarm) + text
        digest = hashlib.sha256(f"{key}|{text}|{detail}".encode()).hexdigest()[:16]
        for target in targets(self.config, stack):
            data: dict[str, Any] = {"text": text, "detail": detail, "id": digest, "status": status}
            if origin and origin.get("inbox") == target["inbox"]:
                data["origin"] = origin
            if story:
                data["story"] = f"{self.config.swarm}:{story}" if self.config.swarm else story
            self.queue.progress(Result("notice", job, "notice", True, data, target), pipe)
            sent += 1
        if sent:
            NOTICES.inc(sent)
            log.info("notice about %s: %s", stack or "(no stack)", text)
        return sent

    # -- claims: the bot's own jobs announce themselves ---------------------------------

    def claim(self, names: Iterable[str], job: str, seconds: float) -> None:
        self.store.claim(names, job, seconds)

    def release(
        self, names: Iterable[str], services: list[dict[str, Any]], removed: Collection[str] = ()
    ) -> None:
        """The job is over: drop its claims, and leave the specs it produced (and the
        services it removed) as expected, so the watcher takes them in silently, however
        late it looks, but still tells any later change. The drift check reads the specs
        too: a `!scale` of a stack from git differs from git on purpose, and was told."""
        made = {s["ID"]: summarize(s)["spec"] for s in services}
        self.store.release(names, made, removed)

    def expect(self, object_id: str, state: str) -> None:
        """A bot job is about to put this object (a node's availability) in ``state`` and
        tells it itself: the watcher, however late it looks, takes the change in silently."""
        self.store.expect(object_id, state)

    def made_by_bot(self, service: dict[str, Any]) -> bool:
        """Is this service's spec the one a bot job left it with (within the last hour)?"""
        made = self.store.made([service["ID"]])
        return bool(made.get(service["ID"]) == summarize(service)["spec"])

    def claimed_among(self, names: Collection[str]) -> set[str]:
        """Which of these stacks or services a job holds now (one round trip)."""
        return self.store.claimed_among(names)
