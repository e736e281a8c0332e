"""A local stand-in for Slack that speaks its real wire protocol on 127.0.0.1.

There is no local Slack server, so this implements what the bot uses: the Web API methods
(JSON or form bodies, bearer tokens, ``ok``/``error`` envelopes, HTTP 429 with
``Retry-After``) and a Socket Mode websocket that sends ``hello``, delivers real envelope
shapes and records the acks. The real slack-bolt app runs against it unchanged.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aiohttp import WSMsgType, web

from tests.harness import free_port, wait_until

BOT_USER = "UBOT0001"
BOT_ID = "BBOT0001"
TEAM = "T0000001"
BOT_TOKEN = "xoxb-test-bot-token"
APP_TOKEN = "xapp-1-test-app-token"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


# The Web API calls Slack rate-limits per channel (special tier: about one a second).
WRITES = {"chat.postMessage", "chat.update", "reactions.add"}


class FakeSlack:
    def __init__(self) -> None:
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api/"
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.messages: list[dict[str, Any]] = []
        self.reactions: list[dict[str, Any]] = []
        self.acks: dict[str, dict[str, Any]] = {}
        self.rate_limit: dict[str, int] = {}  # method -> how many more calls get a 429
        # channel -> (until, Retry-After): every post, edit and reaction there gets a 429
        # until then, as Slack limits one channel's writes.
        self.channel_limit: dict[str, tuple[float, int]] = {}
        # (method, channel, time, HTTP status) of every call that names a channel
        self.attempts: list[tuple[str, str, float, int]] = []
        # channel -> the Web API error every post or edit there gets (not_in_channel, ...)
        self.refuse: dict[str, str] = {}
        self.connections = 0
        self._ts = 1_700_000_000.0
        self._ws: web.WebSocketResponse | None = None
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    # -- life cycle ----------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(10)

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/link/", self._socket)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def stop(self) -> None:
        async def shutdown() -> None:
            if self._ws is not None:
                await self._ws.close()
            assert self._runner is not None
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    # -- the Web API -----------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        # Like Slack, accept arguments in the query string, a form body or a JSON body.
        params: dict[str, Any] = dict(request.query)
        if request.content_type == "application/json":
            params.update(await request.json())
        else:
            params.update(await request.post())
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        channel = str(params.get("channel", ""))
        with self._lock:
            self.calls.append((method, params))
            until, retry_after = self.channel_limit.get(channel, (0.0, 1))
            if method in WRITES and time.monotonic() < until:
                self.attempts.append((method, channel, time.monotonic(), 429))
                return web.json_response(
                    {"ok": False, "error": "ratelimited"},
                    status=429,
                    headers={"Retry-After": str(retry_after)},
                )
            if channel:
                self.attempts.append((method, channel, time.monotonic(), 200))
            if self.rate_limit.get(method, 0) > 0:
                self.rate_limit[method] -= 1
                return web.json_response(
                    {"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": "1"}
                )
        expected = APP_TOKEN if method == "apps.connections.open" else BOT_TOKEN
        if token != expected:
            return web.json_response({"ok": False, "error": "invalid_auth"})
        handler = getattr(self, "_" + method.replace(".", "_"), None)
        refusal = self.refuse.get(str(params.get("channel", "")))
        if refusal and method in ("chat.postMessage", "chat.update"):
            return web.json_response({"ok": False, "error": refusal})
        if handler is None:
            return web.json_response({"ok": False, "error": "unknown_method"})
        return web.json_response({"ok": True, **handler(params)})

    def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": "https://test.slack.com/",
            "team": "Test",
            "user": "swarmbot",
            "team_id": TEAM,
            "user_id": BOT_USER,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _apps_connections_open(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"url": f"ws://127.0.0.1:{self.port}/link/?ticket={uuid.uuid4().hex}"}

    def _next_ts(self) -> str:
        with self._lock:
            self._ts += 0.0001
            return f"{self._ts:.6f}"

    def _chat_postMessage(self, params: dict[str, Any]) -> dict[str, Any]:
        ts = self._next_ts()
        message = {
            "channel": params["channel"],
            "ts": ts,
            "thread_ts": params.get("thread_ts"),
            "text": params.get("text", ""),
            "blocks": params.get("blocks") or [],
            "edits": [],
            "history": [params.get("text", "")],  # the text as posted, then after each edit
            "at": time.perf_counter(),  # when it arrived: for round trips in make bench
        }
        with self._lock:
            self.messages.append(message)
        return {"channel": params["channel"], "ts": ts, "message": {"text": message["text"]}}

    def _chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            message = next(m for m in self.messages if m["ts"] == params["ts"])
            message["edits"].append(params.get("text", ""))
            message["history"].append(params.get("text", ""))
            message["text"] = params.get("text", "")
            message["blocks"] = params.get("blocks") or []
        return {"channel": params["channel"], "ts": params["ts"]}

    def _reactions_add(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.reactions.append(dict(params))
        return {}

    # -- Socket Mode -------------------------------------------------------------------------

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.connections += 1
        self._ws = ws
        await ws.send_json(
            {
                "type": "hello",
                "num_connections": 1,
                "connection_info": {"app_id": "A0001"},
                "debug_info": {"host": "fake", "approximate_connection_time": 18060},
            }
        )
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                data = json.loads(msg.data)
                if "envelope_id" in data:
                    with self._lock:
                        self.acks[data["envelope_id"]] = data
        return ws

    def connected(self) -> bool:
        return self._ws is not None and not self._ws.closed

    def drop_connection(self) -> None:
        """Close the websocket from the server side, as Slack does when it rotates hosts."""

        async def close() -> None:
            assert self._ws is not None
            await self._ws.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)

    def _envelope(
        self,
        kind: str,
        payload: dict[str, Any],
        retry_attempt: int = 0,
        envelope_id: str | None = None,
    ) -> str:
        envelope_id = envelope_id or uuid.uuid4().hex
        envelope = {
            "envelope_id": envelope_id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": kind != "events_api",
            "retry_attempt": retry_attempt,
            "retry_reason": "timeout" if retry_attempt else "",
        }
        wait_until(self.connected, 30, "the bot's Socket Mode connection")
        ws = self._ws
        assert ws is not None
        asyncio.run_coroutine_threadsafe(ws.send_json(envelope), self._loop).result(10)
        return envelope_id

    def event_payload(self, event: dict[str, Any], event_id: str) -> dict[str, Any]:
        return {
            "token": "legacy",
            "team_id": TEAM,
            "api_app_id": "A0001",
            "event": event,
            "type": "event_callback",
            "event_id": event_id,
            "event_time": int(time.time()),
            "authorizations": [{"team_id": TEAM, "user_id": BOT_USER, "is_bot": True}],
        }

    def post_event(
        self, event: dict[str, Any], event_id: str | None = None, retry_attempt: int = 0
    ) -> str:
        """Deliver an Events API event over Socket Mode; returns its event ID."""
        event_id = event_id or f"Ev{uuid.uuid4().hex[:10].upper()}"
        self._envelope("events_api", self.event_payload(event, event_id), retry_attempt)
        return event_id

    def say(self, channel: str, user: str, text: str, **extra: Any) -> str:
        """A person posts ``text``; returns the message ts."""
        ts = self._next_ts()
        self.post_event(
            {
                "type": "message",
                "channel": channel,
                "user": user,
                "text": text,
                "ts": ts,
                "event_ts": ts,
                "channel_type": "channel",
                **extra,
            }
        )
        return ts

    def slash(self, channel: str, user: str, command: str, text: str) -> str:
        envelope = self._envelope(
            "slash_commands",
            {
                "token": "legacy",
                "team_id": TEAM,
                "team_domain": "test",
                "channel_id": channel,
                "channel_name": "ops",
                "user_id": user,
                "user_name": "someone",
                "command": command,
                "text": text,
                "api_app_id": "A0001",
                "is_enterprise_install": "false",
                "response_url": f"http://127.0.0.1:{self.port}/response",
                "trigger_id": uuid.uuid4().hex,
            },
        )
        return envelope

    # -- what the bot did --------------------------------------------------------------------

    def thread(self, channel: str, ts: str) -> list[dict[str, Any]]:
        with self._lock:
            return [
                dict(m) for m in self.messages if m["channel"] == channel and m["thread_ts"] == ts
            ]

    def reactions_on(self, channel: str, ts: str) -> set[str]:
        with self._lock:
            return {
                r["name"]
                for r in self.reactions
                if r["channel"] == channel and r["timestamp"] == ts
            }

    def count(self, method: str, channel: str = "") -> int:
        """Calls of ``method`` so far (to ``channel`` only, if given), refused ones too."""
        with self._lock:
            return sum(
                1 for m, p in self.calls if m == method and channel in ("", p.get("channel"))
            )


def wait_for_reply(
    slack: FakeSlack, channel: str, ts: str, contains: str, timeout: float = 60
) -> dict[str, Any]:
    """The first thread reply on ``ts`` that says ``contains`` now or did before an edit."""

    def find() -> dict[str, Any] | None:
        replies = slack.thread(channel, ts)
        return next((m for m in replies if any(contains in t for t in m["history"])), None)

    return wait_until(find, timeout, f"a thread reply containing {contains!r}", interval=0.1)


def bot_config(
    fake: FakeSlack,
    admins: tuple[str, ...] = ("UALICE001",),
    channel: str = "C0OPS0001",
    viewers: tuple[str, ...] = (),
    mode: str = "socket",
    http_port: int = 0,
    notices: str = "",
) -> str:
    """Config text for a bot served through ``fake``: one channel, an ``ops`` role with
    every command for ``admins`` and a read-only ``viewer`` role for ``viewers``; Socket
    Mode, or the HTTP Events API on ``http_port``; ``notices``, a channel for notices the
    bot also serves. The one Slack config of the tests."""

    def quoted(users: tuple[str, ...]) -> str:
        return ", ".join(f'"slack:{u}"' for u in users)

    viewer = (
        f"""
[roles.viewer]
users = [{quoted(viewers)}]
commands = ["services", "ps"]
stacks = ["*"]
"""
        if viewers
        else ""
    )
    return f"""
[roles.ops]
users = [{quoted(admins)}]
commands = ["*"]
stacks = ["*"]
{viewer}
[slack]
mode = "{mode}"
bot_token = "{BOT_TOKEN}"
app_token = "{APP_TOKEN}"
signing_secret = "{SIGNING_SECRET}"
channels = [{", ".join(f'"{c}"' for c in (channel, notices) if c)}]
api_url = "{fake.api_url}"
http_port = {http_port or 3000}
"""


@contextmanager
def running_fake() -> Iterator[FakeSlack]:
    """A started fake Slack, stopped afterwards: the one way the tests get one."""
    fake = FakeSlack()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()
