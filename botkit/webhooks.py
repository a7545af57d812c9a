"""Bot events, and signed outgoing webhooks fed from a durable outbox.

The :class:`~botkit.bot.Bot` calls its ``observers`` (async callables taking a
:class:`BotEvent`) after each turn and each feedback; the agent console does the same for
agent replies and closed conversations. :meth:`Webhooks.observer` is such an observer: it
writes one row per subscribed endpoint into the ``webhook_deliveries`` outbox (migration
``0004``), and :class:`botkit.webhooks_delivery.DeliveryWorker` POSTs them, signed, with
retries and exponential backoff.

Event types: ``conversation.handoff``, ``conversation.closed``, ``message.created``,
``feedback.created``. The request body is ``{"id", "type", "created_at", "bot", "data"}``.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from botkit._tables import reading, webhook_deliveries, webhook_endpoints, writing
from botkit.messages import IncomingMessage, Reply
from botkit.store.base import Feedback
from botkit.store.engine import EngineTables

log = logging.getLogger("botkit.webhooks")

EVENT_TYPES = ("conversation.handoff", "conversation.closed", "message.created", "feedback.created")
_CACHE_S = 5.0


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class BotEvent:
    """Something that happened in a conversation (what observers and webhooks receive)."""

    type: str
    bot: str
    conversation_id: str
    data: dict[str, Any]
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created_at: datetime = field(default_factory=_now)

    def body(self) -> dict[str, Any]:
        """The JSON document a webhook endpoint receives."""
        return {"id": self.id, "type": self.type, "created_at": self.created_at.isoformat(), "bot": self.bot,
                "data": {"conversation_id": self.conversation_id, **self.data}}


Observer = Callable[[BotEvent], Awaitable[None]]
"""An async callable that receives bot events; its failures are logged, never raised."""


async def notify(observers: Sequence[Observer], events: Iterable[BotEvent]) -> None:
    """Hand ``events`` to every observer, in order.

    An observer is extension code running after the turn was stored: its failure is logged
    and must not turn a stored answer into an error for the user.
    """
    for event in events:
        for observer in list(observers):
            try:
                await observer(event)
            except Exception:
                log.exception("observer %r failed on %s", observer, event.type)


def turn_events(bot: str, incoming: IncomingMessage, reply: Reply) -> list[BotEvent]:
    """The events of one finished turn: the user's message, the bot's reply (when one was
    recorded) and, when this turn handed the conversation to a person, the handoff."""
    if reply.duplicate:
        return []
    conversation = reply.conversation_id
    user = {"message": {"id": reply.reply_to, "role": "user", "text": incoming.text}, "channel": incoming.channel}
    events = [BotEvent("message.created", bot, conversation, user)]
    if reply.message_id is not None:
        message = {"id": reply.message_id, "role": "assistant", "text": reply.text, "reply_to": reply.reply_to,
                   "citations": [c.to_dict() for c in reply.citations], "backend": reply.backend,
                   "abstained": reply.abstained, "handoff": reply.handoff}
        events.append(BotEvent("message.created", bot, conversation, {"message": message, "channel": incoming.channel}))
        if reply.handoff:
            data = {"channel": incoming.channel, "question": incoming.text, "message": reply.text}
            events.append(BotEvent("conversation.handoff", bot, conversation, data))
    return events


def feedback_event(bot: str, feedback: Feedback) -> BotEvent:
    """The ``feedback.created`` event of a recorded rating."""
    data = {"feedback": {"id": feedback.id, "rating": feedback.rating, "message_id": feedback.message_id,
                         "comment": feedback.comment}}
    return BotEvent("feedback.created", bot, feedback.conversation_id, data)


@dataclass(frozen=True)
class WebhookEndpoint:
    """A URL that receives signed events (never its secret)."""

    id: str
    url: str
    events: tuple[str, ...]
    created_at: datetime
    active: bool = True

    def wants(self, event_type: str) -> bool:
        """Whether this endpoint subscribed to ``event_type``."""
        return self.active and event_type in self.events


@dataclass(frozen=True)
class Delivery:
    """One event for one endpoint in the outbox, and how its delivery went."""

    id: int
    endpoint_id: str
    event_id: str
    event_type: str
    payload: dict[str, Any]
    created_at: datetime
    attempts: int
    next_attempt_at: datetime
    last_status: int | None = None
    last_error: str | None = None
    delivered_at: datetime | None = None
    failed_at: datetime | None = None

    @property
    def status(self) -> str:
        """``delivered``, ``failed`` (given up) or ``pending``."""
        return "delivered" if self.delivered_at else "failed" if self.failed_at else "pending"


def _utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=timezone.utc) if value is not None and value.tzinfo is None else value


def to_delivery(row: Any) -> Delivery:
    """A ``webhook_deliveries`` row as a :class:`Delivery`."""
    r = row._mapping
    return Delivery(id=r["id"], endpoint_id=r["endpoint_id"], event_id=r["event_id"], event_type=r["event_type"],
                    payload=dict(r["payload"]), created_at=_utc(r["created_at"]),  # type: ignore[arg-type]
                    attempts=r["attempts"], next_attempt_at=_utc(r["next_attempt_at"]),  # type: ignore[arg-type]
                    last_status=r["last_status"], last_error=r["last_error"], delivered_at=_utc(r["delivered_at"]),
                    failed_at=_utc(r["failed_at"]))


def _to_endpoint(row: Any) -> WebhookEndpoint:
    return WebhookEndpoint(id=row.id, url=row.url, events=tuple(row.events), created_at=_utc(row.created_at),  # type: ignore[arg-type]
                           active=row.disabled_at is None)


class Webhooks(EngineTables):
    """Webhook endpoints and the delivery outbox in the bot's database.

    Takes an :class:`AsyncEngine` (no I/O in the constructor) or builds one with
    :meth:`from_url`. ``wakeup`` (set by a delivery worker in the same process) is set on
    each publish, so deliveries start at once rather than at the next poll.
    """

    def __init__(self, engine: AsyncEngine, *, owns_engine: bool = False) -> None:
        super().__init__(engine, owns_engine=owns_engine)
        self._cache: tuple[float, list[WebhookEndpoint]] | None = None
        self.wakeup: asyncio.Event | None = None

    async def add(self, url: str, *, events: Sequence[str] | None = None) -> tuple[WebhookEndpoint, str]:
        """Register an endpoint; return it and its signing secret (shown once)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r} is not an http(s) URL")
        chosen = tuple(events or EVENT_TYPES)
        unknown = [e for e in chosen if e not in EVENT_TYPES]
        if unknown:
            raise ValueError(f"unknown event type {unknown[0]!r}; known: {', '.join(EVENT_TYPES)}")
        endpoint = WebhookEndpoint(id="wh_" + secrets.token_hex(6), url=url, events=chosen, created_at=_now())
        secret = "whsec_" + secrets.token_urlsafe(32)
        async with writing(self.engine, "add a webhook endpoint") as conn:
            await conn.execute(webhook_endpoints.insert().values(
                id=endpoint.id, url=url, secret=secret, events=list(chosen), created_at=endpoint.created_at))
        self._cache = None
        return endpoint, secret

    async def list(self) -> list[WebhookEndpoint]:
        """Every endpoint, oldest first."""
        query = select(webhook_endpoints).order_by(webhook_endpoints.c.created_at, webhook_endpoints.c.id)
        async with reading(self.engine, "list webhook endpoints") as conn:
            return [_to_endpoint(row) for row in (await conn.execute(query)).all()]

    async def remove(self, endpoint_id: str) -> bool:
        """Delete an endpoint and its outbox rows; ``False`` when unknown."""
        async with writing(self.engine, "remove a webhook endpoint") as conn:
            result = await conn.execute(delete(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id))
        self._cache = None
        return bool(result.rowcount)

    async def _subscribers(self, event_type: str) -> builtins.list[WebhookEndpoint]:
        cached = self._cache
        if cached is None or cached[0] < time.monotonic():
            cached = self._cache = (time.monotonic() + _CACHE_S, [e for e in await self.list() if e.active])
        return [endpoint for endpoint in cached[1] if endpoint.wants(event_type)]

    async def publish(self, event: BotEvent) -> int:
        """Put ``event`` in the outbox once per subscribed endpoint; return how many rows.

        Idempotent per (endpoint, event id). Endpoints are re-read every few seconds, so one
        added by another process starts receiving events shortly after.
        """
        endpoints = await self._subscribers(event.type)
        if not endpoints:
            return 0
        at = _now()
        rows = [{"endpoint_id": e.id, "event_id": event.id, "event_type": event.type, "payload": event.body(),
                 "created_at": at, "attempts": 0, "next_attempt_at": at} for e in endpoints]
        async with writing(self.engine, "queue a webhook event") as conn:
            existing = set((await conn.execute(select(webhook_deliveries.c.endpoint_id).where(
                webhook_deliveries.c.event_id == event.id))).scalars())
            rows = [row for row in rows if row["endpoint_id"] not in existing]
            if rows:
                await conn.execute(webhook_deliveries.insert(), rows)
        if self.wakeup is not None:
            self.wakeup.set()
        return len(rows)

    async def observer(self, event: BotEvent) -> None:
        """An :data:`Observer` that publishes every event (register it on ``bot.observers``)."""
        await self.publish(event)

    async def deliveries(self, *, limit: int = 50, status: str | None = None) -> builtins.list[Delivery]:
        """Outbox rows, newest first; ``status``: ``pending``, ``delivered`` or ``failed``."""
        d = webhook_deliveries.c
        query = select(webhook_deliveries).order_by(d.id.desc()).limit(limit)
        if status == "delivered":
            query = query.where(d.delivered_at.is_not(None))
        elif status == "failed":
            query = query.where(d.failed_at.is_not(None))
        elif status == "pending":
            query = query.where(d.delivered_at.is_(None), d.failed_at.is_(None))
        async with reading(self.engine, "list webhook deliveries") as conn:
            return [to_delivery(row) for row in (await conn.execute(query)).all()]


__all__ = [
    "EVENT_TYPES", "BotEvent", "Delivery", "Observer", "WebhookEndpoint", "Webhooks", "feedback_event", "notify",
    "turn_events",
]
