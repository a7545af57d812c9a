"""``store.turn()``: the turn lock together with the conversation as read inside it."""

from __future__ import annotations

import asyncio
import time

import pytest

from botkit.store import SQLConversationStore
from botkit.store.base import ConversationStore, Message

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


# -- answers in recorded order -------------------------------------------------------------


async def _answer(store: ConversationStore, message: Message, order: list[int], *, timeout: float = 5) -> None:
    async with store.turn(message.conversation_id, timeout=timeout, message=message):
        order.append(message.seq)
        await store.add_bot_message(message.conversation_id, f"re {message.text}", reply_to=message.id)


@pytest.mark.parametrize("implementation", ["sql", "default"])
async def test_a_later_message_lets_an_earlier_unanswered_one_go_first(
    store: SQLConversationStore, store_url: str, implementation: str
) -> None:
    conversation = await store.create_conversation(bot="b", channel="web")
    first, _ = await store.add_user_message(conversation.id, "first")
    second, _ = await store.add_user_message(conversation.id, "second")
    order: list[int] = []
    async with SQLConversationStore(store_url, lock_lease_s=LEASE_S) as other:  # "another worker"
        if implementation == "default":
            later = asyncio.create_task(_answer_default(other, second, order))
        else:
            later = asyncio.create_task(_answer(other, second, order))
        await asyncio.sleep(0.3)  # the second message's turn got the lock first and handed it back
        assert order == [] and not later.done()
        await _answer(store, first, order)
        await asyncio.wait_for(later, 5)
    assert order == [first.seq, second.seq]
    history = await store.history(conversation.id, limit=10)
    assert [(m.role, m.reply_to) for m in history][-2:] == [("assistant", first.id), ("assistant", second.id)]


async def _answer_default(store: SQLConversationStore, message: Message, order: list[int]) -> None:
    async with ConversationStore.turn(store, message.conversation_id, timeout=5, message=message):
        order.append(message.seq)
        await store.add_bot_message(message.conversation_id, f"re {message.text}", reply_to=message.id)


async def test_an_earlier_message_whose_turn_died_holds_later_ones_back_only_for_the_timeout(
    store: SQLConversationStore,
) -> None:
    conversation = await store.create_conversation(bot="b", channel="web")
    await store.add_user_message(conversation.id, "never answered: its worker died")
    second, _ = await store.add_user_message(conversation.id, "second")
    order: list[int] = []
    started = time.monotonic()
    await _answer(store, second, order, timeout=0.5)
    assert order == [second.seq]
    assert 0.4 < time.monotonic() - started < 3.0


async def test_answered_earlier_messages_and_handoffs_do_not_hold_a_turn_back(store: SQLConversationStore) -> None:
    conversation = await store.create_conversation(bot="b", channel="web")
    asked, _ = await store.add_user_message(conversation.id, "asked while a human had it")
    await store.add_bot_message(conversation.id, "an agent's answer", reply_to=None, role="agent")
    later, _ = await store.add_user_message(conversation.id, "later")
    started = time.monotonic()
    await _answer(store, later, [], timeout=5)  # an agent answered after `asked`: not waiting for it
    assert time.monotonic() - started < 1.0
    await store.set_state(conversation.id, "handoff")
    unanswered, _ = await store.add_user_message(conversation.id, "to the human")
    latest, _ = await store.add_user_message(conversation.id, "to the human again")
    started = time.monotonic()
    async with store.turn(conversation.id, timeout=5, message=latest) as fresh:  # a human holds it: no wait
        assert fresh is not None and fresh.state == "handoff"
    assert time.monotonic() - started < 1.0
    assert asked.seq < later.seq < unanswered.seq
