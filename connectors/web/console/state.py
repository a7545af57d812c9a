"""What the console's routes share, built once per app by :func:`connectors.web.console.mount`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncEngine

from botkit.agents import AgentDirectory
from botkit.bot import Bot
from botkit.config import ConsoleSettings
from botkit.inbox import Inbox
from botkit.webhooks import Webhooks
from botkit.webhooks_delivery import DeliveryWorker
from connectors.web.security import RateLimiter

GAPS_CACHE_S = 120.0


@dataclass
class ConsoleState:
    """The bot, the tables of the human side, the webhook worker and the sign-in limiter."""

    bot: Bot
    settings: ConsoleSettings
    engine: AsyncEngine
    cookie_key: bytes
    agents: AgentDirectory
    webhooks: Webhooks
    worker: DeliveryWorker
    login_limiter: RateLimiter
    _inbox: Inbox | None = None
    _gaps: dict[str, tuple[float, Any]] = field(default_factory=dict)

    @property
    def inbox(self) -> Inbox:
        """The handoff inbox over the bot's store (open once the app has started)."""
        if self._inbox is None:
            self._inbox = Inbox(store=self.bot.store, engine=self.engine, observers=self.bot.observers)
        return self._inbox

    def cached_gaps(self, key: str) -> Any | None:
        """Knowledge gaps computed less than two minutes ago for ``key``."""
        found = self._gaps.get(key)
        return found[1] if found and found[0] > time.monotonic() else None

    def remember_gaps(self, key: str, value: Any) -> None:
        """Cache gaps (they embed every unanswered question)."""
        self._gaps = {k: v for k, v in self._gaps.items() if v[0] > time.monotonic()}
        self._gaps[key] = (time.monotonic() + GAPS_CACHE_S, value)


def get_console(request: Request) -> ConsoleState:
    """The app's :class:`ConsoleState`."""
    state: ConsoleState = request.app.state.console
    return state
