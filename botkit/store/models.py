"""The store's tables (SQLAlchemy 2 declarative).

The schema itself is created by the Alembic migrations in :mod:`botkit.migrations`;
these classes describe it for queries, and a test checks that both agree. Change a table
here *and* add a migration.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Alembic's version table for botkit's schema (not the default name, so a database
# shared with another Alembic-managed application does not mix their histories).
VERSION_TABLE = "botkit_alembic_version"

JSONType = JSON().with_variant(JSONB(), "postgresql")
# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a bigint identity.
BigId = BigInteger().with_variant(Integer(), "sqlite")
Timestamp = DateTime(timezone=True)


class Base(DeclarativeBase):
    """Declarative base of botkit's tables."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ConversationRow(Base):
    """A conversation; ``last_seq`` is the counter that numbers its messages."""

    __tablename__ = "conversations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    bot: Mapped[str] = mapped_column(String(100))
    channel: Mapped[str] = mapped_column(String(50))
    external_id: Mapped[str | None] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16), default="bot")
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType, default=dict)
    last_seq: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    updated_at: Mapped[datetime] = mapped_column(Timestamp)

    __table_args__ = (
        CheckConstraint("state IN ('bot', 'handoff', 'closed')", name="state"),
        # find_conversation: latest open conversation of a channel user.
        Index("ix_conversations_lookup", "bot", "channel", "external_id", "created_at"),
        # list_conversations (console queue): per bot and state, most recent first.
        Index("ix_conversations_bot_state_updated", "bot", "state", "updated_at"),
        Index("ix_conversations_updated_at", "updated_at"),
    )


class MessageRow(Base):
    """A message, numbered by ``seq`` within its conversation."""

    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    citations: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    backend: Mapped[str | None] = mapped_column(String(200))
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    channel_message_id: Mapped[str | None] = mapped_column(String(255))
    reply_to: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"))
    abstained: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(Timestamp)

    __table_args__ = (
        CheckConstraint("role IN ('user', 'assistant', 'system', 'agent')", name="role"),
        # Ordering and the bounded history query (ORDER BY seq DESC LIMIT n).
        UniqueConstraint("conversation_id", "seq"),
        # Idempotent user messages: one row per platform message id per conversation.
        UniqueConstraint("conversation_id", "channel_message_id"),
        Index("ix_messages_reply_to", "reply_to"),
    )


class FeedbackRow(Base):
    """A rating of a conversation or of one of its messages."""

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    rating: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(Timestamp)

    __table_args__ = (
        CheckConstraint("rating IN (-1, 1)", name="rating"),
        Index("ix_feedback_conversation_id", "conversation_id"),
        Index("ix_feedback_message_id", "message_id"),
        Index("ix_feedback_created_at", "created_at"),
    )


class ProcessedEventRow(Base):
    """A platform event a connector has taken on (exactly-once delivery)."""

    __tablename__ = "processed_events"

    channel: Mapped[str] = mapped_column(String(50), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    status: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    # Migration 0003: the event itself and the time of the latest claim (recovery).
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    claimed_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)

    # Pruning old events.
    __table_args__ = (Index("ix_processed_events_created_at", "created_at"),)


class TurnLockRow(Base):
    """A conversation's turn-lock lease (SQLite only; PostgreSQL uses advisory locks)."""

    __tablename__ = "turn_locks"

    conversation_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[float] = mapped_column(Float, doc="Unix time at which the lease lapses.")
