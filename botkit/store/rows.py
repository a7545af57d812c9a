"""Conversions between database rows and the store's value objects."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Row

from botkit.store.base import Conversation, Feedback, Message


def now() -> datetime:
    """The current time, timezone-aware UTC (the store's clock for timestamps)."""
    return datetime.now(timezone.utc)


def aware(value: datetime) -> datetime:
    """``value`` as UTC-aware (SQLite returns timestamps without their zone)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def json_object(value: Any) -> dict[str, Any]:
    """A citation as a JSON object: mappings, objects with ``to_dict()``, pydantic models and
    dataclasses are accepted."""
    if isinstance(value, Mapping):
        return dict(value)
    if callable(getattr(value, "to_dict", None)):  # its own JSON form (Citation), no deep copy
        return dict(value.to_dict())
    if hasattr(value, "model_dump"):
        return dict(value.model_dump(mode="json"))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"a citation must be a mapping, a dataclass or a pydantic model, not {type(value).__name__}")


def to_conversation(row: Row[Any]) -> Conversation:
    """A ``conversations`` row as a :class:`Conversation`."""
    r = row._mapping
    return Conversation(
        id=r["id"],
        bot=r["bot"],
        channel=r["channel"],
        external_id=r["external_id"],
        state=r["state"],
        metadata=dict(r["metadata"] or {}),
        created_at=aware(r["created_at"]),
        updated_at=aware(r["updated_at"]),
    )


def to_message(row: Row[Any]) -> Message:
    """A ``messages`` row as a :class:`Message`."""
    r = row._mapping
    return Message(
        id=r["id"],
        conversation_id=r["conversation_id"],
        seq=r["seq"],
        role=r["role"],
        text=r["text"],
        citations=list(r["citations"] or []),
        backend=r["backend"],
        latency_ms=r["latency_ms"],
        prompt_tokens=r["prompt_tokens"],
        completion_tokens=r["completion_tokens"],
        channel_message_id=r["channel_message_id"],
        reply_to=r["reply_to"],
        abstained=bool(r["abstained"]),
        created_at=aware(r["created_at"]),
    )


def to_feedback(row: Row[Any]) -> Feedback:
    """A ``feedback`` row as a :class:`Feedback`."""
    r = row._mapping
    return Feedback(
        id=r["id"],
        conversation_id=r["conversation_id"],
        message_id=r["message_id"],
        rating=r["rating"],
        comment=r["comment"],
        created_at=aware(r["created_at"]),
    )
