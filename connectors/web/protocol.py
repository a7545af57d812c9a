"""Request and response schemas of the HTTP API (``/api/v1``); they make ``/openapi.json``.

Streaming (``Accept: text/event-stream`` on ``POST .../messages``) sends Server-Sent
Events named:

- ``delta``: ``{"text": "..."}``, a piece of the answer, in order;
- ``citations``: ``{"citations": [Citation, ...]}``, once, before ``done``;
- ``done``: the complete :class:`ReplyOut` (as stored), always the last event on success;
- ``error``: ``{"error": {"type": ..., "message": ...}}``, the last event when the turn
  failed after the stream started.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SSE_EVENTS = ("delta", "citations", "done", "error")


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConversationCreate(_Schema):
    """Optional body of ``POST /api/v1/conversations``."""

    metadata: dict[str, Any] = Field(default_factory=dict, description="Free-form data kept with the conversation.")


class ConversationCreated(_Schema):
    """A new conversation and the bearer token that reads and writes it."""

    id: str
    token: str = Field(description="Send as `Authorization: Bearer <token>` on the conversation's endpoints.")


class MessageIn(_Schema):
    """A user message."""

    text: str = Field(min_length=1, description="The message (limit: the bot's limits.max_message_chars).")
    client_message_id: str | None = Field(
        None, min_length=1, max_length=200,
        description="Idempotency key: resending it returns the stored reply instead of running a second turn.",
    )


class CitationOut(_Schema):
    """A source the reply relies on, numbered as in the text ([1], [2], ...)."""

    number: int
    source: str
    title: str
    snippet: str
    section: str = ""
    url: str | None = None


class ReplyOut(_Schema):
    """The bot's answer to one message."""

    conversation_id: str
    text: str
    citations: list[CitationOut] = Field(default_factory=list)
    backend: str | None = None
    handoff: bool = Field(False, description="The conversation is now with a human.")
    abstained: bool = Field(False, description="No source supported an answer.")
    message_id: int | None = None
    reply_to: int | None = None
    latency_ms: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    duplicate: bool = Field(False, description="The stored reply to an already-processed client_message_id.")


class MessageOut(_Schema):
    """One message of a conversation's history."""

    id: int | None = None
    role: str
    text: str
    citations: list[CitationOut] = Field(default_factory=list)
    backend: str | None = None
    created_at: datetime | None = None


class History(_Schema):
    """A conversation's messages, oldest first."""

    conversation_id: str
    messages: list[MessageOut]


class FeedbackIn(_Schema):
    """A rating of the conversation or of one bot message."""

    rating: Literal["up", "down", 1, -1] = Field(description='"up" or 1 (helpful), "down" or -1 (not helpful).')
    message_id: int | None = Field(None, ge=1, le=2**63 - 1,
                                   description="The rated bot message (default: the conversation).")
    comment: str | None = Field(None, max_length=2000)

    @field_validator("rating", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @property
    def score(self) -> int:
        """The rating as +1 / -1."""
        return 1 if self.rating in ("up", 1) else -1


class FeedbackRecorded(_Schema):
    """Acknowledgement of feedback."""

    status: Literal["recorded"] = "recorded"


class WidgetConfig(_Schema):
    """Display settings the widget reads from ``bot.yaml`` (its data- attributes win)."""

    name: str
    title: str
    greeting: str
    primary_color: str
    position: str
    max_message_chars: int
    suggestions: list[str] = Field(default_factory=list)


class ConversationSummary(_Schema):
    """A conversation as listed by the admin API."""

    id: str
    channel: str | None = None
    external_id: str | None = None
    state: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class ConversationList(_Schema):
    """A page of conversations."""

    conversations: list[ConversationSummary]
    limit: int
    offset: int


class IngestResult(_Schema):
    """What ``POST /api/v1/admin/ingest`` did."""

    ingested: bool
    report: dict[str, Any] | None = None


class Health(_Schema):
    """Liveness (``/healthz``) or readiness (``/readyz``) of the process."""

    status: Literal["ok", "unavailable"]
    checks: dict[str, bool] = Field(default_factory=dict)


class ErrorDetail(_Schema):
    """A problem with the request (the ``detail`` of 4xx/5xx answers other than 422)."""

    detail: str
