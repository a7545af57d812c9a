"""The conversation store: conversations, messages, feedback and turn locks in SQL.

``SQLConversationStore("sqlite:///data/botkit.db")`` (the default for a bot) or
``SQLConversationStore("postgresql://user@host:5432/botkit")`` to share state between
machines. ``await store.open()`` connects and applies the packaged Alembic migrations.

    store = SQLConversationStore.from_config(config)
    await store.open()
    conversation = await store.create_conversation(bot="acme", channel="web")
    async with store.turn_lock(conversation.id, timeout=30):
        message, created = await store.add_user_message(conversation.id, "Hi", channel_message_id="c1")
"""

from __future__ import annotations

from botkit.store.base import (
    ROLES,
    STATES,
    Conversation,
    ConversationState,
    ConversationStore,
    Feedback,
    Message,
    Role,
    UserTurn,
)
from botkit.store.engine import create_engine
from botkit.store.sql import SQLConversationStore
from botkit.store.urls import normalize_database_url

__all__ = [
    "ROLES",
    "STATES",
    "Conversation",
    "ConversationState",
    "ConversationStore",
    "Feedback",
    "Message",
    "Role",
    "SQLConversationStore",
    "UserTurn",
    "create_engine",
    "normalize_database_url",
]
