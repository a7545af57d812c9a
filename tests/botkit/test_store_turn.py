"""``store.turn()``: the turn lock together with the conversation as read inside it."""

from __future__ import annotations

import asyncio

from botkit.store import SQLConversationStore
from botkit.store.base import ConversationStore

LEASE_S = 1.0


async def test_turn_reads_the_conversation_after_the_lock_is_taken(
    store: SQLConversationStore, store_url: str
) -> None:
    conversation = await store.create_conversation(bot="b", channel="web")
    async with SQLConversationStore(store_url, lock_lease_s=LEASE_S) as other:
        async with store.turn(conversation.id, timeout=5) as fresh:
            assert fresh == conversation
            # Another process's turn waits; meanwhile a human takes the conversation over.
            waiter = asyncio.create_task(_state_seen_by_turn(other, conversation.id))
            await asyncio.sleep(0.2)
            assert not waiter.done()
            await store.set_state(conversation.id, "handoff")
        assert await asyncio.wait_for(waiter, 10) == "handoff"
        # Within one process too (the in-process lock, then the database lock).
        async with store.turn(conversation.id, timeout=5):
            waiter = asyncio.create_task(_state_seen_by_turn(store, conversation.id))
            await asyncio.sleep(0.1)
            await store.set_state(conversation.id, "bot")
        assert await asyncio.wait_for(waiter, 10) == "bot"


async def test_turn_of_an_unknown_conversation_gives_none(store: SQLConversationStore) -> None:
    async with store.turn("no-such-conversation", timeout=5) as fresh:
        assert fresh is None
    async with store.turn_lock("no-such-conversation", timeout=1):  # the lock was released
        pass


async def test_the_default_turn_is_turn_lock_then_get_conversation(store: SQLConversationStore) -> None:
    conversation = await store.create_conversation(bot="b", channel="web")
    async with ConversationStore.turn(store, conversation.id, timeout=5) as fresh:
        assert fresh == conversation


async def _state_seen_by_turn(store: SQLConversationStore, conversation_id: str) -> str:
    async with store.turn(conversation_id, timeout=10) as fresh:
        assert fresh is not None
        return fresh.state
