"""Tables of the human side (agents, console sessions, claims, notes) and of webhooks.

They live in the bot's database next to the store's tables (migration ``0004``) and are
reached through an :class:`~sqlalchemy.ext.asyncio.AsyncEngine` of their own (as
:mod:`botkit.keys` does), so the conversation store's code stays untouched. Helpers:
:func:`reading` / :func:`writing` open one unit of work with botkit's error translation
(a writing one takes SQLite's write lock first).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from botkit.store.engine import WRITE, translating
from botkit.store.models import Base

JSONType = JSON().with_variant(JSONB(), "postgresql")
BigId = BigInteger().with_variant(Integer(), "sqlite")
Timestamp = DateTime(timezone=True)

agents = Table(
    "agents", Base.metadata,
    Column("id", String(32), primary_key=True),
    Column("email", String(255), nullable=False),
    Column("password_hash", String(255), nullable=False),
    Column("role", String(16), nullable=False),
    Column("bots", JSONType, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("disabled_at", Timestamp, nullable=True),
    UniqueConstraint("email"),
    CheckConstraint("role IN ('agent', 'admin')", name="role"),
)

agent_sessions = Table(
    "agent_sessions", Base.metadata,
    Column("id", String(64), primary_key=True),  # SHA-256 of the session token
    Column("agent_id", String(32), ForeignKey("agents.id", ondelete="CASCADE"), nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("expires_at", Timestamp, nullable=False),
    Index("ix_agent_sessions_agent_id", "agent_id"),
)

conversation_claims = Table(
    "conversation_claims", Base.metadata,
    Column("conversation_id", String(64), ForeignKey("conversations.id", ondelete="CASCADE"), primary_key=True),
    Column("agent_id", String(32), ForeignKey("agents.id", ondelete="CASCADE"), nullable=False),
    Column("claimed_at", Timestamp, nullable=False),
)

agent_notes = Table(
    "agent_notes", Base.metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("conversation_id", String(64), ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False),
    Column("agent_id", String(32), ForeignKey("agents.id", ondelete="SET NULL"), nullable=True),
    Column("text", Text, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Index("ix_agent_notes_conversation_id", "conversation_id"),
)

webhook_endpoints = Table(
    "webhook_endpoints", Base.metadata,
    Column("id", String(32), primary_key=True),
    Column("url", String(2000), nullable=False),
    Column("secret", String(100), nullable=False),
    Column("events", JSONType, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("disabled_at", Timestamp, nullable=True),
)

webhook_deliveries = Table(
    "webhook_deliveries", Base.metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("endpoint_id", String(32), ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), nullable=False),
    Column("event_id", String(64), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("payload", JSONType, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", Timestamp, nullable=False),
    Column("last_status", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("delivered_at", Timestamp, nullable=True),
    Column("failed_at", Timestamp, nullable=True),
    UniqueConstraint("endpoint_id", "event_id"),
    Index("ix_webhook_deliveries_next_attempt_at", "next_attempt_at"),
)


@asynccontextmanager
async def reading(engine: AsyncEngine, action: str) -> AsyncIterator[AsyncConnection]:
    """A read-only unit of work; database errors become :class:`~botkit.errors.StoreError`."""
    async with translating(action, engine.url), engine.connect() as conn:
        yield conn


@asynccontextmanager
async def writing(
    engine: AsyncEngine, action: str, *, passthrough: tuple[type[BaseException], ...] = ()
) -> AsyncIterator[AsyncConnection]:
    """A writing unit of work (SQLite: ``BEGIN IMMEDIATE``), committed when the block ends."""
    async with translating(action, engine.url, passthrough=passthrough), engine.connect() as conn:
        await conn.execution_options(**{WRITE: True})
        async with conn.begin():
            yield conn
