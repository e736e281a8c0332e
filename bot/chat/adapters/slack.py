"""The Slack adapter (slack-bolt): Socket Mode by default, or the HTTP Events API.

Commands arrive three ways: a message in an allowed channel (``!deploy dev``), a mention
(``@swarmbot deploy dev``) and a slash command (``/swarm deploy dev``, acknowledged at once
so Slack's 3-second limit is always met). Users are identified by their Slack user ID only.

Slack redelivers events it thinks were missed (Socket Mode envelopes, HTTP retries up to
about five minutes later), so every event is handled once: its ID is recorded in Redis
with a TTL longer than Slack's retry window. The Socket Mode client reconnects by itself.

Every write to a channel (an answer the bot computed itself, a job's result, progress
edits, notices, reactions, a slash command's echo) goes through that channel's lane
(``_write``): one at a time, and on HTTP 429 retried no sooner than its Retry-After, for
as long as ``LANE_SECONDS`` allows; never posted twice (a 429 posted nothing), and never
holding up another channel. slack_sdk's own rate-limit retries gave up after five, and
the answer was lost.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncConnectionErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from bot.chat.adapters.slack_render import messages, unescape
from bot.chat.conversation import Conversation, Mark, Undeliverable
from bot.chat.dispatch import Dispatcher
from bot.core.config import Config, SlackConfig
from bot.core.replies import Message, Reply
from bot.core.wire import Result

log = logging.getLogger("swarmbot.slack")

# Slack's last retry of an event comes about five minutes after the first delivery.
HANDLED_TTL = 3600
LANE_SECONDS = 300.0  # how long a write waits out rate limits before it is an error
MARKS: dict[Mark, str] = {"seen": "eyes", "done": "white_check_mark", "failed": "x"}
MENTION = re.compile(r"^\s*<@[A-Z0-9]+>[\s:,]*")


# Web API errors no retry can mend: the bot is not in the channel or may not post there.
FOR_GOOD = {
    "not_in_channel",
    "channel_not_found",
    "is_archived",
    "restricted_action",
    "invalid_auth",
    "account_inactive",
    "msg_too_long",
}


def _refused(exc: SlackApiError) -> Exception:
    """The Web API's refusal as the conversation sees it: for good, or worth a retry."""
    error = str(exc.response.get("error", "")) if exc.response is not None else ""
    return Undeliverable(error) if error in FOR_GOOD else ConnectionError(error or str(exc))


class SlackAdapter:
    platform = "slack"
    inbox = "slack"
    deduplicates = False  # Slack has no idempotency key for posts

    def __init__(self, config: Config, dispatcher: Dispatcher) -> None:
        assert config.slack is not None
        self.config = config
        self.sc: SlackConfig = config.slack
        self.state = dispatcher.queue.chat_state(self.inbox)
        self.dispatcher = dispatcher
        self.conversation = Conversation(self, dispatcher, self.state)
        self.client = AsyncWebClient(
            token=self.sc.bot_token.reveal().decode(), base_url=self.sc.api_url
        )
        # Connection errors only: a 429 reaches the channel's lane (below), which waits.
        self.client.retry_handlers.append(AsyncConnectionErrorRetryHandler(max_retry_count=3))
        self._lanes: dict[str, asyncio.Lock] = {}
        signing = self.sc.signing_secret.reveal().decode() if self.sc.signing_secret else ""
        self.app = AsyncApp(
            client=self.client,
            signing_secret=signing,
            logger=logging.getLogger("swarmbot.slack.bolt"),
        )
        self.app.event("message")(self._on_message)
        self.app.event("app_mention")(self._on_mention)
        self.app.command(self.sc.slash_command)(self._on_slash)
        self._tasks: set[asyncio.Task[None]] = set()
        self.connected = False  # for /healthz

    # -- running --------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        who = await self.client.auth_test()
        log.info("connected to Slack as %s (%s)", who.get("user"), who.get("user_id"))
        if self.sc.mode == "socket":
            assert self.sc.app_token is not None
            handler = AsyncSocketModeHandler(self.app, self.sc.app_token.reveal().decode())
            await handler.connect_async()
            self.connected = True
            log.info("serving %d channel(s) over Socket Mode", len(self.sc.channels))
            await stop.wait()
            await handler.close_async()
            return
        server = web.Application()
        server.router.add_post(self.sc.http_path, self._http)
        runner = web.AppRunner(server, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, self.sc.http_host, self.sc.http_port).start()
        self.connected = True
        log.info(
            "serving %d channel(s) over HTTP at %s:%d%s",
            len(self.sc.channels),
            self.sc.http_host,
            self.sc.http_port,
            self.sc.http_path,
        )
        await stop.wait()
        await runner.cleanup()

    async def _http(self, request: web.Request) -> web.Response:
        """HTTP Events API: Bolt checks X-Slack-Signature and the timestamp's age."""
        return await to_aiohttp_response(
            await self.app.async_dispatch(await to_bolt_request(request))
        )

    # -- incoming ---------------------------------------------------------------------------

    async def _on_message(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        if event.get("subtype") or event.get("bot_id"):
            return  # edits (message_changed), deletions, joins, bot messages: never commands
        text = unescape(event.get("text") or "")
        if text.lstrip().startswith(self.config.prefix):
            await self._command(event, text, body.get("event_id", ""))

    async def _on_mention(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        if event.get("subtype") or event.get("bot_id"):
            return
        text = unescape(event.get("text") or "")
        mention = MENTION.match(text)
        if mention is None:
            return  # the bot is named later in the text: not addressed as a command
        words = text[mention.end() :].strip()
        if words:
            await self._command(
                event,
                self.config.prefix + words.lstrip(self.config.prefix),
                body.get("event_id", ""),
            )

    async def _on_slash(self, ack: Any, command: dict[str, Any]) -> None:
        channel = command.get("channel_id", "")
        if channel not in self.sc.channels:
            await ack(f"{self.sc.slash_command} works only in the channels I serve")
            return
        await ack()  # within Slack's 3 seconds, before anything slow
        task = asyncio.create_task(self._slash(command))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _slash(self, command: dict[str, Any]) -> None:
        """The echo of a slash command (the thread its answer goes to), then the command.
        Run as a task after the ack: what fails is logged here, not lost in the task."""
        try:
            if not await self._first_time(f"slash:{command.get('trigger_id', '')}"):
                return
            user, text = command.get("user_id", ""), command.get("text", "").strip()
            channel = command["channel_id"]
            echo = f"<@{user}> ran `{self.sc.slash_command} {text}`"
            root = await self._write(channel, self.client.chat_postMessage, text=echo)
            event = {"channel": channel, "user": user, "ts": root["ts"]}
            await self._command(event, self.config.prefix + text, "", deduplicated=True)
        except Exception:
            log.exception("slash command %s not answered", command.get("text", ""))

    async def _command(
        self, event: dict[str, Any], text: str, event_id: str, deduplicated: bool = False
    ) -> None:
        channel = event.get("channel", "")
        if channel not in self.sc.channels or not event.get("user"):
            return
        ts = event["ts"]
        ref = {"channel": channel, "ts": ts, "thread": event.get("thread_ts") or ts}
        handled = f"handled:event:{event_id or ts}"
        if not deduplicated and not await self.conversation.first_time(
            handled, HANDLED_TTL, ref, event_id or ts
        ):
            return
        message = Message(self.platform, f"slack:{event['user']}", channel, text, ref)
        await self.conversation.command(message, event_id or ts)

    async def _first_time(self, key: str) -> bool:
        return await self.state.first_time(f"handled:{key}", HANDLED_TTL)

    # -- the conversation's surface (bot/chat/conversation.py) ----------------------------

    async def deliver(self, result: Result, reply: Reply) -> None:
        await self.conversation.deliver(result, reply)

    def serves(self, ref: dict[str, str]) -> bool:
        return ref.get("channel") in self.sc.channels

    async def post(self, ref: dict[str, str], reply: Reply, key: str) -> str:
        return await self._post(ref, reply)

    async def edit(self, ref: dict[str, str], message: str, reply: Reply, key: str) -> None:
        try:
            await self._write(
                ref["channel"], self.client.chat_update, ts=message, **messages(reply)[0]
            )
        except SlackApiError as exc:
            raise _refused(exc) from None

    async def react(self, ref: dict[str, str], mark: Mark, key: str) -> None:
        await self._react(ref["channel"], ref["ts"], MARKS[mark])

    async def announce(self, ref: dict[str, str], reply: Reply, key: str) -> str:
        first = ""
        try:
            for part in messages(reply):
                resp = await self._write(ref["channel"], self.client.chat_postMessage, **part)
                first = first or str(resp["ts"])
        except SlackApiError as exc:
            raise _refused(exc) from None
        return first

    def thread_of(self, ref: dict[str, str], message: str) -> dict[str, str]:
        return {"channel": ref["channel"], "thread": message, "ts": message}

    async def _post(self, ref: dict[str, str], reply: Reply) -> str:
        first = ""
        try:
            for part in messages(reply):
                resp = await self._write(
                    ref["channel"], self.client.chat_postMessage, thread_ts=ref["thread"], **part
                )
                first = first or resp["ts"]
        except SlackApiError as exc:
            raise _refused(exc) from None
        return first

    async def _react(self, channel: str, ts: str, name: str) -> None:
        try:
            await self._write(channel, self.client.reactions_add, timestamp=ts, name=name)
        except SlackApiError as exc:
            if exc.response.get("error") != "already_reacted":
                raise

    async def _write(self, channel: str, call: Callable[..., Awaitable[Any]], **args: Any) -> Any:
        """``call(channel=channel, **args)`` in the channel's lane: one write at a time per
        channel; a 429 waits its Retry-After (at least a second) and tries again, until
        ``LANE_SECONDS`` have passed; then the error is the caller's (a delivery retried
        later). Another channel's lane is never held up by this one."""
        lane = self._lanes.setdefault(channel, asyncio.Lock())
        loop = asyncio.get_running_loop()
        async with lane:
            deadline = loop.time() + LANE_SECONDS
            while True:
                try:
                    return await call(channel=channel, **args)
                except SlackApiError as exc:
                    if exc.response is None or exc.response.status_code != 429:
                        raise
                    wait = _retry_after(exc.response.headers)
                    if loop.time() + wait > deadline:
                        raise
                    log.info("Slack rate-limits %s: retrying in %.0fs", channel, wait)
                    await asyncio.sleep(wait)


def _retry_after(headers: Any) -> float:
    """Slack's Retry-After, in seconds (at least one; a header that is no number: one)."""
    for key in ("Retry-After", "retry-after"):
        value = (headers or {}).get(key)
        if value is not None:
            try:
                return max(1.0, float(value[0] if isinstance(value, list) else value))
            except (TypeError, ValueError):
                return 1.0
    return 1.0
