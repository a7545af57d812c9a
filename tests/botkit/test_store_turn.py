"""``store.turn()``: the turn lock together with the conversation as read inside it."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from functools import partial
from typing import Any
from unittest.mock import ANY

import pytest

from botkit.errors import ConversationLocked, StoreError
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


# -- the turn's own round trips: first write, window read in the lock, last write ----------


@pytest.mark.parametrize("implementation", ["sql", "default"])
async def test_record_user_message_starts_the_conversation_once_and_stays_idempotent(
    store: SQLConversationStore, implementation: str
) -> None:
    record = store.record_user_message if implementation == "sql" else partial(ConversationStore.record_user_message, store)
    cid = f"new-{uuid.uuid4().hex[:12]}"
    conversation, first, created = await record(
        cid, "hello", bot="b", channel="web", external_id="u1", metadata={"plan": "pro"}, channel_message_id="m1"
    )
    assert created and first.seq == 1 and first.role == "user" and first.conversation_id == cid
    assert (conversation.id, conversation.bot, conversation.channel, conversation.external_id) == (cid, "b", "web", "u1")
    assert conversation.state == "bot" and conversation.metadata == {"plan": "pro"}
    assert await store.get_conversation(cid) == dataclasses.replace(conversation, updated_at=ANY)
    again, same, created = await record(cid, "hello", bot="b", channel="web", channel_message_id="m1")
    assert not created and same == first and again.id == cid
    _, second, created = await record(cid, "and then?", bot="other", channel="slack", metadata={"x": 1})
    assert created and second.seq == 2
    stored = await store.get_conversation(cid)
    assert stored is not None and (stored.bot, stored.metadata) == ("b", {"plan": "pro"})  # not started twice
    assert [m.id for m in await store.history(cid, limit=10)] == [first.id, second.id]
    with pytest.raises(ValueError, match="conversation id"):  # create_conversation's rule for new ids
        await record("not:a-store-id", "hi", bot="b", channel="web")


@pytest.mark.parametrize("implementation", ["sql", "default"])
async def test_turn_with_history_reads_the_window_once_the_lock_is_held(
    store: SQLConversationStore, store_url: str, implementation: str
) -> None:
    conversation = await store.create_conversation(bot="b", channel="web")
    asked, _ = await store.add_user_message(conversation.id, "one")
    await store.add_bot_message(conversation.id, "re one", reply_to=asked.id)
    latest, _ = await store.add_user_message(conversation.id, "two")
    turn = store.turn_with_history if implementation == "sql" else partial(ConversationStore.turn_with_history, store)
    async with SQLConversationStore(store_url, lock_lease_s=LEASE_S) as other:
        async with other.turn(conversation.id, timeout=5):
            waiter = asyncio.create_task(_window_seen_by_turn(turn, conversation.id, latest))
            await asyncio.sleep(0.2)
            assert not waiter.done()
            await other.add_bot_message(conversation.id, "a notice", reply_to=None, role="system")
        fresh, window = await asyncio.wait_for(waiter, 10)
    assert fresh is not None and fresh.id == conversation.id
    assert [m.text for m in window] == ["re one", "two", "a notice"]  # oldest first, written while it waited
    await store.set_state(conversation.id, "handoff")
    async with turn(conversation.id, timeout=5, message=latest, history=3) as (fresh, window):
        assert fresh is not None and fresh.state == "handoff" and window == []
    async with turn("no-such-conversation", timeout=5, history=3) as (fresh, window):
        assert fresh is None and window == []


async def _window_seen_by_turn(turn: Any, conversation_id: str, message: Message) -> tuple[Any, list[Message]]:
    async with turn(conversation_id, timeout=10, message=message, history=3) as found:
        return found


async def test_the_turn_reply_is_its_last_write_and_may_release_the_lock(
    store: SQLConversationStore, store_url: str
) -> None:
    conversation = await store.create_conversation(bot="b", channel="web")
    asked, _ = await store.add_user_message(conversation.id, "question")
    sqlite = store_url.startswith("sqlite")
    async with SQLConversationStore(store_url, lock_lease_s=LEASE_S) as other:
        async with store.turn(conversation.id, timeout=5, message=asked):
            reply = await store.add_turn_reply(
                conversation.id, "answer [1]", reply_to=asked.id, citations=[{"source": "faq"}], backend="scripted",
                latency_ms=3, prompt_tokens=10, completion_tokens=2,
            )
            # SQLite: the lease went with the reply, so another worker's next turn need not
            # wait for this block to end; PostgreSQL's advisory lock is released at the exit.
            if sqlite:
                async with other.turn_lock(conversation.id, timeout=0.5):
                    pass
            else:
                with pytest.raises(ConversationLocked):
                    async with other.turn_lock(conversation.id, timeout=0.3):
                        pass
        async with other.turn_lock(conversation.id, timeout=2):  # and free after the block either way
            pass
    assert reply == await store.get_reply(asked.id)
    assert (reply.role, reply.text, reply.citations, reply.backend) == ("assistant", "answer [1]", [{"source": "faq"}], "scripted")
    assert (reply.latency_ms, reply.prompt_tokens, reply.completion_tokens, reply.abstained) == (3, 10, 2, False)


async def test_a_failed_turn_reply_keeps_the_lock_until_the_block_ends(store: SQLConversationStore, store_url: str) -> None:
    async with SQLConversationStore(store_url, lock_lease_s=LEASE_S) as other:
        async with store.turn_lock("gone-conversation", timeout=5):
            with pytest.raises(StoreError, match="does not exist"):
                await store.add_turn_reply("gone-conversation", "answer", reply_to=1)
            with pytest.raises(ConversationLocked):
                async with other.turn_lock("gone-conversation", timeout=0.3):
                    pass
        async with other.turn_lock("gone-conversation", timeout=2):
            pass


# -- user_turn: record, then lock (one unit of work on SQLite when the lock is free) ------------


def _user_turn(store: SQLConversationStore, implementation: str) -> Any:
    if implementation == "sql":
        return store.user_turn
    return partial(ConversationStore.user_turn, store)


@pytest.mark.parametrize("implementation", ["sql", "default"])
async def test_user_turn_records_the_message_then_holds_the_lock(
    store: SQLConversationStore, store_url: str, implementation: str
) -> None:
    cid = f"ut-{uuid.uuid4().hex[:12]}"
    user_turn = _user_turn(store, implementation)
    async with SQLConversationStore(store_url, lock_lease_s=LEASE_S) as other:
        async with user_turn(
            cid, "hello", bot="b", channel="web", metadata={"plan": "pro"}, channel_message_id="m1", timeout=5, history=5
        ) as turn:
            assert turn.created and turn.reply is None
            assert (turn.conversation.id, turn.conversation.bot, turn.conversation.metadata) == (cid, "b", {"plan": "pro"})
            assert turn.message.seq == 1 and turn.message.text == "hello"
            assert [m.id for m in turn.history] == [turn.message.id]
            with pytest.raises(ConversationLocked):  # held for the block, also against other workers
                async with other.turn_lock(cid, timeout=0.3):
                    pass
            await store.add_turn_reply(cid, "hi there", reply_to=turn.message.id)
        async with other.turn_lock(cid, timeout=2):
            pass
        async with user_turn(cid, "and then?", bot="b", channel="web", timeout=5, history=5) as later:
            assert later.message.seq == 3 and [m.text for m in later.history] == ["hello", "hi there", "and then?"]


@pytest.mark.parametrize("implementation", ["sql", "default"])
async def test_user_turn_records_before_waiting_for_a_busy_lock(
    store: SQLConversationStore, store_url: str, implementation: str
) -> None:
    conversation = await store.create_conversation(bot="b", channel="web")
    user_turn = _user_turn(store, implementation)

    async def turn() -> tuple[int, list[str]]:
        async with user_turn(conversation.id, "while busy", bot="b", channel="web", timeout=10, history=5) as started:
            return started.message.seq, [m.text for m in started.history]

    async with SQLConversationStore(store_url, lock_lease_s=LEASE_S) as other:
        async with other.turn_lock(conversation.id, timeout=5):  # another worker's turn
            waiter = asyncio.create_task(turn())
            await asyncio.sleep(0.3)
            assert not waiter.done()
            assert [m.text for m in await other.history(conversation.id, limit=5)] == ["while busy"]  # recorded already
            await other.add_bot_message(conversation.id, "a notice", reply_to=None, role="system")
        seq, window = await asyncio.wait_for(waiter, 10)
    assert seq == 1 and window == ["while busy", "a notice"]


@pytest.mark.parametrize("implementation", ["sql", "default"])
async def test_user_turn_of_a_resent_message(store: SQLConversationStore, store_url: str, implementation: str) -> None:
    cid = f"ut-{uuid.uuid4().hex[:12]}"
    user_turn = _user_turn(store, implementation)
    async with user_turn(cid, "hello", bot="b", channel="web", channel_message_id="m1", timeout=5, history=5) as first:
        pass  # its turn died before replying
    async with user_turn(cid, "hello", bot="b", channel="web", channel_message_id="m1", timeout=5, history=5) as again:
        assert not again.created and again.message == first.message and again.reply is None  # answer it now
        reply = await store.add_turn_reply(cid, "answer", reply_to=again.message.id)
    async with SQLConversationStore(store_url, lock_lease_s=LEASE_S) as other:
        async with other.turn_lock(cid, timeout=5):  # answered already: no need for the lock
            async with user_turn(cid, "hello", bot="b", channel="web", channel_message_id="m1", timeout=5, history=5) as done:
                assert not done.created and done.reply == reply
    assert await store.count_messages(cid) == 2


async def test_user_turn_lets_an_earlier_unanswered_message_go_first(store: SQLConversationStore, store_url: str) -> None:
    conversation = await store.create_conversation(bot="b", channel="web")
    first, _ = await store.add_user_message(conversation.id, "first")  # its turn is on another worker, not started
    order: list[str] = []

    async def second_turn() -> None:
        async with store.user_turn(conversation.id, "second", bot="b", channel="web", timeout=5, history=5) as turn:
            order.append(turn.message.text)

    later = asyncio.create_task(second_turn())
    await asyncio.sleep(0.3)  # it took the free lock with its message, saw `first` waiting, handed the lock back
    assert order == [] and not later.done()
    async with SQLConversationStore(store_url, lock_lease_s=LEASE_S) as other:
        await _answer(other, first, [])
        order.append("first answered")
    await asyncio.wait_for(later, 5)
    assert order == ["first answered", "second"]


async def test_a_cancelled_user_turn_leaves_no_lock_behind(store: SQLConversationStore, store_url: str) -> None:
    async with SQLConversationStore(store_url, lock_lease_s=LEASE_S) as other:
        for delay in (0, 0.0005, 0.001, 0.002, 0.005):
            cid = f"ut-{uuid.uuid4().hex[:12]}"

            async def turn(cid: str = cid) -> None:
                async with store.user_turn(cid, "hello", bot="b", channel="web", timeout=5, history=5):
                    await asyncio.sleep(10)

            task = asyncio.create_task(turn())
            await asyncio.sleep(delay)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            async with other.turn_lock(cid, timeout=0.5):  # neither the lease nor this process's lock was kept
                pass
            async with store.turn_lock(cid, timeout=0.5):
                pass
