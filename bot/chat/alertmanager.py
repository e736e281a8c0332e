"""Alertmanager's API v2 over HTTP, for the alert commands (``bot.core.alerting.api``).

The standard library's urllib in a worker thread: four plain JSON calls with a timeout
need no client library, and the bot's other HTTP stacks (aiohttp under slack-bolt and
matrix-nio) are optional extras a console-only install does not have.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from typing import Any

from bot.core.alerting.api import AlertApiError
from bot.core.alerting.matchers import Matcher

TIMEOUT = 5.0
MAX_ANSWER = 8 * 1024 * 1024


class Alertmanager:
    def __init__(self, base_url: str) -> None:
        self.base = base_url.rstrip("/")

    async def alerts(self) -> list[dict[str, Any]]:
        found = await self._call("GET", "/api/v2/alerts?active=true&silenced=true&inhibited=true")
        return [a for a in found if isinstance(a, dict)] if isinstance(found, list) else []

    async def silences(self) -> list[dict[str, Any]]:
        found = await self._call("GET", "/api/v2/silences")
        return [s for s in found if isinstance(s, dict)] if isinstance(found, list) else []

    async def silence(
        self, matchers: tuple[Matcher, ...], starts: float, ends: float, by: str, comment: str
    ) -> str:
        body = {
            "matchers": [m.api() for m in matchers],
            "startsAt": _rfc3339(starts),
            "endsAt": _rfc3339(ends),
            "createdBy": by,
            "comment": comment,
        }
        answer = await self._call("POST", "/api/v2/silences", body)
        silence_id = answer.get("silenceID") if isinstance(answer, dict) else None
        if not isinstance(silence_id, str):
            raise AlertApiError("Alertmanager did not say which silence it made")
        return silence_id

    async def unsilence(self, silence_id: str) -> None:
        await self._call("DELETE", f"/api/v2/silence/{silence_id}")

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        return await asyncio.to_thread(self._blocking, method, path, body)

    def _blocking(self, method: str, path: str, body: Any) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        # The base URL is checked by the config (http or https only).
        request = urllib.request.Request(  # noqa: S310
            self.base + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310
                raw = response.read(MAX_ANSWER)
        except urllib.error.HTTPError as exc:
            said = exc.read(300).decode("utf-8", "replace").strip().strip('"')
            raise AlertApiError(f"Alertmanager refused: {exc.code} {said}"[:300]) from None
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise AlertApiError(f"cannot reach Alertmanager at {self.base}: {reason}") from None
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise AlertApiError("Alertmanager's answer was not JSON") from None


def _rfc3339(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at % 1 * 1000):03d}Z"
