"""The Matrix adapter (matrix-nio): rooms in, notices out.

What it guarantees, and how:
- Only the rooms in config: invites to other rooms are rejected, events from them ignored.
- A command runs once: its event ID is recorded in Redis before it is handled, and the
  sync token is kept in Redis, so a restarted bot neither re-runs old commands nor loses
  ones sent while it was down (too old ones are answered "not run", never run by surprise).
- Answers go in a thread on the command (a plain reply where threads are off). The
  conversation itself (👀, the answer, one progress message edited in place, ✅ or ❌) is
  ``bot.chat.conversation``'s, shared with Slack and the terminal; this adapter supplies
  how to post, edit and react in Matrix.
- Every send uses a transaction ID derived from the job, so a result delivered again after
  a crash is deduplicated by the homeserver instead of posted twice.
- Network errors, homeserver restarts and rate limits are retried with backoff (nio
  honours ``retry_after_ms`` on M_LIMIT_EXCEEDED); the loop logs and keeps going.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from typing import Any

import aiohttp
from nio import (
    AsyncClient,
    AsyncClientConfig,
    JoinError,
    RoomResolveAliasError,
    RoomSendError,
    SyncError,
    WhoamiError,
)

from bot.chat.adapters.matrix_render import content, contents, strip_reply_fallback
from bot.chat.conversation import Conversation, Mark, Undeliverable
from bot.chat.dispatch import Dispatcher
from bot.core.config import Config, MatrixConfig, notice_rooms_unserved
from bot.core.replies import Message, Reply
from bot.core.wire import Result

log = logging.getLogger("swarmbot.matrix")

SYNC_TIMEOUT_MS = 30_000
HANDLED_TTL = 7 * 86400
MAX_BACKOFF = 30.0
ENCRYPTED_WARNING = (
    "I cannot read encrypted messages: I have no end-to-end encryption support, so commands "
    "sent in this room are ignored. Use an unencrypted room from my config."
)
MARKS: dict[Mark, str] = {"seen": "👀", "done": "✅", "failed": "❌"}
# Timeline kept per room per sync: more than this while the bot was down and the oldest
# are skipped by the server (logged as a warning).
SYNC_FILTER = {
    "room": {
        "timeline": {"limit": 100},
        "state": {"lazy_load_members": True},
        "ephemeral": {"not_types": ["*"]},
        "account_data": {"not_types": ["*"]},
    },
    "presence": {"not_types": ["*"]},
    "account_data": {"not_types": ["*"]},
}
FIRST_SYNC_FILTER = {
    **SYNC_FILTER,
    "room": {**SYNC_FILTER["room"], "timeline": {"limit": 0}},  # type: ignore[dict-item]
}


async def _unless_stopped(call: Any, stop: asyncio.Event) -> Any:
    """Await ``call`` unless ``stop`` is set first (then cancel it and return None): a
    30-second long poll must not hold up a shutdown."""
    task = asyncio.ensure_future(call)
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return None


class DeliveryError(Exception):
    """The homeserver refused a send for now; the message is retried in its lane."""


# Refusals no retry can mend: the bot is not in the room or may not post there (a room
# it is not configured for rejects its invite), or the room does not exist.
FOR_GOOD = {"M_FORBIDDEN", "M_NOT_FOUND", "M_UNKNOWN_TOKEN", "M_BAD_JSON", "M_TOO_LARGE"}


class MatrixAdapter:
    platform = "matrix"
    inbox = "matrix"
    deduplicates = True  # every send carries a transaction ID the homeserver deduplicates

    def __init__(self, config: Config, dispatcher: Dispatcher) -> None:
        assert config.matrix is not None
        self.config = config
        self.mc: MatrixConfig = config.matrix
        self.state = dispatcher.queue.chat_state(self.inbox)
        self.dispatcher = dispatcher
        self.client = AsyncClient(
            self.mc.homeserver,
            self.mc.user_id,
            device_id=self.mc.device_id,
            # Few transport retries inside nio: the sync loop below owns reconnecting, so
            # outages show in our log. Rate limits (429) are retried by nio without limit.
            config=AsyncClientConfig(max_timeouts=2, request_timeout=SYNC_TIMEOUT_MS / 1000 + 15),
        )
        self.rooms: set[str] = set()
        # Room aliases in matrix.rooms and the notice routes, resolved at start: a notice is
        # sent to the room ID (the API takes no alias).
        # The dispatcher reads the same dict: a room of [swarms] may be named by its alias.
        self.aliases: dict[str, str] = dispatcher.aliases
        self.connected = False  # for /healthz: the last sync worked
        self.first_start_ms = 0
        self.conversation = Conversation(self, dispatcher, self.state)
        self._nonce = ""

    # -- start-up ---------------------------------------------------------------------

    async def start(self) -> None:
        """Log in, resolve and join the configured rooms; retried until it works."""
        if self.mc.access_token is not None:
            self.client.restore_login(
                self.mc.user_id, self.mc.device_id, self.mc.access_token.reveal().decode()
            )
        else:
            assert self.mc.password is not None
            resp = await self.client.login(
                self.mc.password.reveal().decode(), device_name="swarmbot"
            )
            if not getattr(resp, "access_token", None):
                raise RuntimeError(f"Matrix login as {self.mc.user_id} failed: {resp}")
        who = await self.client.whoami()
        if isinstance(who, WhoamiError):
            raise RuntimeError(f"Matrix credentials for {self.mc.user_id} refused: {who.message}")
        if who.user_id != self.mc.user_id:
            raise RuntimeError(f"the access token belongs to {who.user_id}, not {self.mc.user_id}")
        now_ms = int(time.time() * 1000)
        first = await self.state.remembered("first-start", str(now_ms), _is_time_ms)
        self.first_start_ms = int(first)
        self._nonce = await self.state.remembered("txn-nonce", secrets.token_hex(6), _is_nonce)
        routed = {r for route in self.config.notice_routes for r in route.matrix}
        routed |= {r for swarm in self.config.swarms for r in swarm.rooms}
        for alias in sorted({r for r in (*self.mc.rooms, *routed) if r.startswith("#")}):
            resolved = await self.client.room_resolve_alias(alias)
            if isinstance(resolved, RoomResolveAliasError):
                log.error("cannot resolve room alias %s: %s", alias, resolved.message)
                continue
            self.aliases[alias] = resolved.room_id
        for room in self.mc.rooms:
            room_id = self.aliases.get(room, room)
            if room_id.startswith("#"):
                continue  # an alias that did not resolve (logged)
            self.rooms.add(room_id)
            joined = await self.client.join(room_id)
            if isinstance(joined, JoinError):
                log.warning("cannot join %s yet (%s); invite the bot", room, joined.message)
        log.info("logged in as %s; serving %d room(s)", self.mc.user_id, len(self.rooms))
        for unserved in notice_rooms_unserved(self.config, self.rooms, self.aliases):
            log.error(
                "%s is not one of matrix.rooms: notices routed there cannot be posted", unserved
            )

    # -- the sync loop ------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        backoff = 1.0
        started = False
        outage = False
        while not stop.is_set():
            try:
                if not started:
                    await self.start()
                    started = True
                token = await self.state.get("sync-token")
                resp = await _unless_stopped(
                    self.client.sync(
                        timeout=SYNC_TIMEOUT_MS if token else 0,
                        since=token,
                        sync_filter=SYNC_FILTER if token else FIRST_SYNC_FILTER,
                    ),
                    stop,
                )
                if resp is None:
                    break  # stopping: the long poll was cancelled
                if isinstance(resp, SyncError):
                    raise ConnectionError(f"sync refused: {resp.status_code} {resp.message}")
                await self._handle_sync(resp, first=token is None)
                await self.state.put("sync-token", resp.next_batch)
                if outage:
                    log.info("the homeserver is back; syncing again")
                backoff, outage, self.connected = 1.0, False, True
            except (
                aiohttp.ClientError,
                TimeoutError,
                ConnectionError,
                OSError,
                RuntimeError,
            ) as exc:
                outage, self.connected = True, False
                log.warning("homeserver unreachable (%s); retrying in %.0fs", exc, backoff)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
        await self.client.close()

    async def _handle_sync(self, resp: Any, first: bool) -> None:
        for room_id in resp.rooms.invite:
            if room_id in self.rooms:
                log.info("invited to %s; joining", room_id)
                await self.client.join(room_id)
            else:
                log.info("rejecting an invite to %s: not in my config", room_id)
                await self.client.room_leave(room_id)
        for room_id, info in resp.rooms.join.items():
            if room_id not in self.rooms:
                continue
            if info.timeline.limited and not first:  # a first sync skips history on purpose
                log.warning(
                    "room %s: more events than one sync holds; older ones skipped", room_id
                )
            for event in info.timeline.events:
                try:
                    await self._on_event(room_id, event.source)
                except Exception:
                    log.exception(
                        "room %s: handling event %s failed", room_id, event.source.get("event_id")
                    )

    async def _on_event(self, room_id: str, event: dict[str, Any]) -> None:
        sender, event_id = event.get("sender", ""), event.get("event_id", "")
        if sender == self.mc.user_id or not event_id:
            return
        if event.get("type") == "m.room.encrypted":
            await self._warn_encrypted(room_id)
            return
        body = event.get("content") or {}
        if event.get("type") != "m.room.message" or body.get("msgtype") != "m.text":
            return  # notices (other bots), emotes, files: never commands
        relation = body.get("m.relates_to") or {}
        if relation.get("rel_type") == "m.replace" or "m.new_content" in body:
            return  # an edit: editing an old message must not run it
        text = body.get("body")
        if not isinstance(text, str):
            return
        if "m.in_reply_to" in relation:
            text = strip_reply_fallback(text)
        if not text.lstrip().startswith(self.config.prefix):
            return
        sent_ms = int(event.get("origin_server_ts") or 0)
        if sent_ms < self.first_start_ms:
            return  # from before this bot ever ran
        thread = relation.get("event_id") if relation.get("rel_type") == "m.thread" else event_id
        ref = {"room": room_id, "event": event_id, "thread": thread or event_id}
        handled = f"handled:{event_id}"
        if not await self.conversation.first_time(handled, HANDLED_TTL, ref, event_id):
            return  # handled before a restart
        age = time.time() - sent_ms / 1000
        if age > self.mc.max_command_age_seconds:
            note = (
                f"not run: this command was sent {int(age // 60)} min ago, while I was offline; "
                "send it again if it is still wanted"
            )
            await self.react(ref, "seen", f"seen-{event_id}")
            await self.conversation.refuse(ref, Reply(note, status="refused"), event_id)
            return
        await self.conversation.command(
            Message(self.platform, sender, room_id, text, ref), event_id
        )

    async def _warn_encrypted(self, room_id: str) -> None:
        if await self.state.first_time(f"e2e-warned:{room_id}"):
            log.warning("room %s is encrypted; I cannot read it", room_id)
            await self._send(room_id, content(Reply(ENCRYPTED_WARNING)), f"e2e-{room_id}")

    # -- the conversation's surface (bot/chat/conversation.py) ----------------------------

    async def deliver(self, result: Result, reply: Reply) -> None:
        await self.conversation.deliver(result, reply)

    def serves(self, ref: dict[str, str]) -> bool:
        return ref.get("room", "") in self.rooms

    async def post(self, ref: dict[str, str], reply: Reply, key: str) -> str:
        return await self._post(ref, reply, key)

    async def edit(self, ref: dict[str, str], message: str, reply: Reply, key: str) -> None:
        room = ref["room"]
        await self._edit(self.aliases.get(room, room), message, reply, key)

    async def react(self, ref: dict[str, str], mark: Mark, key: str) -> None:
        await self._react(ref["room"], ref.get("event", ""), MARKS[mark], key)

    async def announce(self, ref: dict[str, str], reply: Reply, key: str) -> str:
        """A notice: a room of its own, not a thread; any configured room."""
        room = ref.get("room", "")
        first = ""
        for i, part in enumerate(contents(reply)):
            sent = await self._send(self.aliases.get(room, room), part, f"{key}-{i}")
            first = first or sent
        return first

    def thread_of(self, ref: dict[str, str], message: str) -> dict[str, str]:
        room = ref.get("room", "")
        return {"room": self.aliases.get(room, room), "event": message, "thread": message}

    # -- sending --------------------------------------------------------------------------

    async def _post(self, ref: dict[str, str], reply: Reply, txn: str) -> str:
        """Post ``reply`` in the command's thread (split if large); returns the first event ID."""
        first = ""
        for i, part in enumerate(contents(reply)):
            part["m.relates_to"] = self._relation(ref)
            event_id = await self._send(ref["room"], part, f"{txn}-{i}")
            first = first or event_id
        return first

    def _relation(self, ref: dict[str, str]) -> dict[str, Any]:
        reply_to = {"m.in_reply_to": {"event_id": ref["event"]}}
        if not self.mc.threads:
            return reply_to
        return {
            "rel_type": "m.thread",
            "event_id": ref["thread"],
            "is_falling_back": True,
            **reply_to,
        }

    async def _edit(self, room: str, event_id: str, reply: Reply, txn: str) -> None:
        new = content(reply)
        edit = {
            **new,
            "body": f"* {new['body']}",
            "formatted_body": f"* {new['formatted_body']}",
            "m.new_content": new,
            "m.relates_to": {"rel_type": "m.replace", "event_id": event_id},
        }
        await self._send(room, edit, txn)

    async def _react(self, room: str, event_id: str, key: str, txn: str) -> None:
        if not event_id:
            return
        body = {"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": key}}
        await self._send(room, body, txn, "m.reaction")

    async def _send(
        self, room: str, body: dict[str, Any], txn: str, kind: str = "m.room.message"
    ) -> str:
        resp = await self.client.room_send(room, kind, body, tx_id=f"sb-{self._nonce}-{txn}")
        if isinstance(resp, RoomSendError):
            what = f"{resp.status_code}: {resp.message}"
            raise (Undeliverable if resp.status_code in FOR_GOOD else DeliveryError)(what)
        return str(resp.event_id)


def _is_time_ms(text: str) -> bool:
    return text.isdigit() and len(text) <= 16


def _is_nonce(text: str) -> bool:
    return text.isalnum() and len(text) <= 32
