"""The floor a chat bot's round trip is measured against: the smallest bot the same libraries
make, answering every message in its thread with no work at all.

``python -m bench.echo matrix HOMESERVER USER_ID TOKEN`` (matrix-nio, as swarmbot's Matrix
adapter) or ``python -m bench.echo slack API_URL BOT_TOKEN APP_TOKEN`` (slack-bolt over
Socket Mode, as swarmbot's Slack adapter). Prints "ready" once it listens.
"""

from __future__ import annotations

import asyncio
import sys


async def matrix(homeserver: str, user_id: str, token: str) -> None:
    from nio import AsyncClient, MatrixRoom, RoomMessageText

    client = AsyncClient(homeserver, user_id)
    client.access_token = token
    client.user_id = user_id
    await client.sync(timeout=0)  # what was said before it started is not answered

    async def on_message(room: MatrixRoom, event: RoomMessageText) -> None:
        if event.sender == user_id:
            return
        content = {
            "msgtype": "m.notice",
            "body": f"echo: {event.body}",
            "m.relates_to": {"rel_type": "m.thread", "event_id": event.event_id},
        }
        await client.room_send(room.room_id, "m.room.message", content)

    client.add_event_callback(on_message, RoomMessageText)  # type: ignore[arg-type]
    print("ready", flush=True)
    await client.sync_forever(timeout=30_000)


async def slack(api_url: str, bot_token: str, app_token: str) -> None:
    from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
    from slack_bolt.async_app import AsyncApp
    from slack_sdk.web.async_client import AsyncWebClient

    app = AsyncApp(client=AsyncWebClient(token=bot_token, base_url=api_url))

    @app.event("message")
    async def on_message(event: dict, client: AsyncWebClient) -> None:
        await client.chat_postMessage(
            channel=event["channel"], thread_ts=event["ts"], text=f"echo: {event['text']}"
        )

    handler = AsyncSocketModeHandler(app, app_token)
    await handler.connect_async()
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    kind, *args = sys.argv[1:]
    asyncio.run(matrix(*args) if kind == "matrix" else slack(*args))
