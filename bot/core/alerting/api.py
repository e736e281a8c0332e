"""What answering commands ask of Alertmanager's API (``!alerts``, ``!silence``,
``!silences``, ``!unsilence``); ``bot.chat.alertmanager`` implements it over HTTP."""

from __future__ import annotations

from typing import Any, Protocol

from bot.core.alerting.matchers import Matcher


class AlertApiError(Exception):
    """Alertmanager could not be asked, or refused; the message is safe for chat."""


class AlertApi(Protocol):
    async def alerts(self) -> list[dict[str, Any]]:
        """The alerts active now (firing), as API v2's GET /alerts gives them."""
        ...

    async def silences(self) -> list[dict[str, Any]]:
        """Every silence Alertmanager knows (active, pending and expired)."""
        ...

    async def silence(
        self, matchers: tuple[Matcher, ...], starts: float, ends: float, by: str, comment: str
    ) -> str:
        """Create a silence; its ID."""
        ...

    async def unsilence(self, silence_id: str) -> None:
        """Expire a silence now."""
        ...
