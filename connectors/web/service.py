"""Translation between HTTP and the bot: the connector's two pure functions and SSE framing.

``to_incoming`` turns a validated request into an :class:`IncomingMessage`; ``render``
turns a :class:`Reply` into the JSON reply object. Botkit errors map to HTTP statuses in
:func:`error_status`; nothing here knows about routing.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from botkit.errors import (
    BackendError,
    BotkitError,
    ConversationLocked,
    InvalidMessage,
    RetrievalError,
    StoreUnavailable,
)
from botkit.messages import Citation, IncomingMessage, Reply, ReplyCitations, ReplyDelta, ReplyDone, ReplyEvent

CHANNEL = "web"
RETRY_AFTER_S = 2
BACKEND_FAILED = "Sorry, I can't answer right now. Please try again in a moment."


def to_incoming(
    conversation_id: str,
    text: str,
    *,
    client_message_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> IncomingMessage:
    """The bot's view of a message posted to ``/api/v1/conversations/{id}/messages``."""
    return IncomingMessage(
        text=text,
        conversation_id=conversation_id,
        channel=CHANNEL,
        channel_message_id=client_message_id,
        metadata=dict(metadata or {}),
    )


def render(reply: Reply) -> dict[str, Any]:
    """The JSON reply object (:class:`~connectors.web.protocol.ReplyOut`)."""
    return reply.to_dict()


def render_citation(citation: Citation | Mapping[str, Any]) -> dict[str, Any]:
    """A citation as JSON, whether the store hands back a :class:`Citation` or a dict."""
    if isinstance(citation, Citation):
        return citation.to_dict()
    data = dict(citation)
    return {
        "number": int(data.get("number", 0)),
        "source": str(data.get("source", "")),
        "title": str(data.get("title", "")),
        "snippet": str(data.get("snippet", "")),
        "section": str(data.get("section", "") or ""),
        "url": data.get("url"),
    }


def render_message(message: Any) -> dict[str, Any]:
    """One stored message (``botkit.store.Message``) as a history entry."""
    return {
        "id": getattr(message, "id", None),
        "role": str(getattr(message, "role", "")),
        "text": getattr(message, "text", "") or "",
        "citations": [render_citation(c) for c in (getattr(message, "citations", None) or [])],
        "backend": getattr(message, "backend", None),
        "created_at": getattr(message, "created_at", None),
    }


def render_conversation(conversation: Any) -> dict[str, Any]:
    """One stored conversation (``botkit.store.Conversation``) as an admin list entry."""
    state = getattr(conversation, "state", None)
    return {
        "id": conversation.id,
        "channel": getattr(conversation, "channel", None),
        "external_id": getattr(conversation, "external_id", None),
        "state": getattr(state, "value", state),
        "created_at": getattr(conversation, "created_at", None),
        "updated_at": getattr(conversation, "updated_at", None),
        "metadata": dict(getattr(conversation, "metadata", None) or {}),
    }


def text_problem(text: str, max_chars: int) -> str | None:
    """Why ``text`` is refused before it reaches the bot, or ``None``."""
    if not text.strip():
        return "text must not be empty"
    if len(text) > max_chars:
        return f"text is longer than {max_chars} characters"
    return None


@dataclass(frozen=True)
class HttpError:
    """How a botkit error is answered over HTTP."""

    status: int
    type: str
    message: str
    retry_after: int | None = None


def error_status(exc: BotkitError) -> HttpError:
    """Map a botkit error to a status, a type name and a message safe to show a user."""
    if isinstance(exc, InvalidMessage):
        return HttpError(422, "invalid_message", exc.message)
    if isinstance(exc, ConversationLocked):
        return HttpError(409, "conversation_busy", "Another message of this conversation is being answered; "
                         "retry shortly.", RETRY_AFTER_S)
    if isinstance(exc, StoreUnavailable):
        return HttpError(503, "store_unavailable", "The service is temporarily unavailable; retry shortly.",
                         RETRY_AFTER_S)
    if isinstance(exc, BackendError):
        return HttpError(502, "backend_error", BACKEND_FAILED)
    if isinstance(exc, RetrievalError):
        return HttpError(503, "knowledge_unavailable", "The knowledge base is temporarily unavailable; retry shortly.",
                         RETRY_AFTER_S)
    message = exc.message if exc.user_safe else "The request could not be completed."
    return HttpError(500, type(exc).__name__, message)


def sse(event: str, data: Any) -> bytes:
    """One Server-Sent Event frame with a JSON payload."""
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)
    return f"event: {event}\ndata: {payload}\n\n".encode()


def event_frame(event: ReplyEvent) -> bytes:
    """The SSE frame of one reply event."""
    if isinstance(event, ReplyDelta):
        return sse("delta", {"text": event.text})
    if isinstance(event, ReplyCitations):
        return sse("citations", {"citations": [c.to_dict() for c in event.citations]})
    if isinstance(event, ReplyDone):
        return sse("done", render(event.reply))
    raise TypeError(f"unknown reply event {event!r}")


_END = object()
log = logging.getLogger("botkit.web")


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("a streamed turn failed", exc_info=task.exception())


class DetachedStream:
    """Runs a reply stream in its own task so the turn completes even if the client leaves.

    The first event is awaited by :meth:`start`, so errors raised before anything was
    streamed (locked conversation, store down) still become an HTTP status.
    """

    def __init__(self, events: AsyncIterator[ReplyEvent], tasks: set[asyncio.Task[None]]) -> None:
        self._events = events
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._task = asyncio.create_task(self._pump())
        tasks.add(self._task)
        self._task.add_done_callback(tasks.discard)
        self._task.add_done_callback(_log_failure)
        self._first: Any = None

    async def _pump(self) -> None:
        try:
            async for event in self._events:
                self._queue.put_nowait(event)
        except BotkitError as exc:
            self._queue.put_nowait(exc)
        finally:
            self._queue.put_nowait(_END)

    async def start(self) -> None:
        """Wait for the first event; raise the botkit error if the turn failed before it."""
        self._first = await self._queue.get()
        if isinstance(self._first, BotkitError):
            raise self._first

    async def items(self) -> AsyncIterator[ReplyEvent | BotkitError]:
        """The reply events in order; a :class:`BotkitError` last if the turn failed midway."""
        item = self._first
        while item is not _END:
            yield item
            item = await self._queue.get()

    async def frames(self) -> AsyncIterator[bytes]:
        """The botkit SSE frames: the events, then an ``error`` event if the turn failed midway."""
        async for item in self.items():
            if isinstance(item, BotkitError):
                problem = error_status(item)
                yield sse("error", {"error": {"type": problem.type, "message": problem.message}})
            else:
                yield event_frame(item)
