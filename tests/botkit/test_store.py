"""The conversation store's API on SQLite and PostgreSQL: CRUD, idempotency, history."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import timezone

import pytest
from sqlalchemy import event

from botkit.errors import StoreError
from botkit.store import SQLConversationStore, create_engine


def _bot() -> str:
    """A bot name of its own, so tests sharing the PostgreSQL database never see each other's rows."""
    return f"bot-{uuid.uuid4().hex[:8]}"


async def test_create_get_and_find_conversation(store: SQLConversationStore) -> None:
    bot = _bot()
    created = await store.create_conversation(bot=bot, channel="slack", external_id="U1", metadata={"team": "T1"})
    assert len(created.id) >= 22 and created.id.isalnum()
    assert (created.bot, created.channel, created.external_id, created.state) == (bot, "slack", "U1", "bot")
    assert created.metadata == {"team": "T1"}
    assert created.created_at is not None and created.created_at.tzinfo is not None
    assert await store.get_conversation(created.id) == created
    assert await store.get_conversation("missing") is None
    named_id = f"client-{uuid.uuid4().hex[:8]}"
    named = await store.create_conversation(bot=bot, channel="web", conversation_id=named_id)
    assert named.id == named_id and await store.get_conversation(named_id) == named
    with pytest.raises(StoreError, match="already taken"):
        await store.create_conversation(bot=bot, channel="web", conversation_id=named_id)
    with pytest.raises(ValueError, match="conversation id"):
        await store.create_conversation(bot=bot, channel="web", conversation_id="no spaces/slashes")

    assert await store.find_conversation(bot=bot, channel="slack", external_id="U1") == created
    assert await store.find_conversation(bot=bot, channel="web", external_id="U1") is None
    newer = await store.create_conversation(bot=bot, channel="slack", external_id="U1")
    assert (await store.find_conversation(bot=bot, channel="slack", external_id="U1")) == newer
    await store.set_state(newer.id, "closed")
    found = await store.find_conversation(bot=bot, channel="slack", external_id="U1")
    assert found is not None and found.id == created.id


async def test_set_state_and_update_metadata(store: SQLConversationStore) -> None:
    conversation = await store.create_conversation(bot=_bot(), channel="web", metadata={"a": 1, "b": 2})
    handed = await store.set_state(conversation.id, "handoff")
    assert handed.state == "handoff" and handed.updated_at >= conversation.updated_at  # type: ignore[operator]
    with pytest.raises(ValueError, match="unknown conversation state"):
        await store.set_state(conversation.id, "asleep")  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="does not exist"):
        await store.set_state("missing", "closed")

    updated = await store.update_metadata(conversation.id, {"b": None, "c": {"nested": [1, 2]}})
    assert updated.metadata == {"a": 1, "c": {"nested": [1, 2]}}
    assert updated.state == "handoff"
    # Concurrent patches of different keys all land (read-modify-write under the write lock).
    await asyncio.gather(*(store.update_metadata(conversation.id, {f"k{i}": i}) for i in range(8)))
    final = await store.get_conversation(conversation.id)
    assert final is not None and all(final.metadata[f"k{i}"] == i for i in range(8))
    with pytest.raises(StoreError, match="does not exist"):
        await store.update_metadata("missing", {"a": 1})


async def test_list_conversations_filters_and_orders(store: SQLConversationStore) -> None:
    bot = _bot()
    first = await store.create_conversation(bot=bot, channel="web")
    second = await store.create_conversation(bot=bot, channel="web")
    await store.create_conversation(bot=_bot(), channel="web")
    await store.add_user_message(first.id, "bump")  # first is now the most recently active
    listed = await store.list_conversations(bot=bot)
    assert [c.id for c in listed] == [first.id, second.id]
    await store.set_state(second.id, "handoff")
    assert [c.id for c in await store.list_conversations(bot=bot, state="handoff")] == [second.id]
    assert [c.id for c in await store.list_conversations(bot=bot, limit=1, offset=1)] == [first.id]
    with pytest.raises(ValueError):
        await store.list_conversations(limit=0)


async def test_user_message_is_idempotent_on_channel_message_id(store: SQLConversationStore) -> None:
    conversation = await store.create_conversation(bot=_bot(), channel="web")
    message, created = await store.add_user_message(conversation.id, "hello", channel_message_id="c-1")
    assert created and message.role == "user" and message.seq == 1 and message.text == "hello"
    again, created_again = await store.add_user_message(conversation.id, "hello (resent)", channel_message_id="c-1")
    assert not created_again and again == message
    assert await store.count_messages(conversation.id) == 1
    # The id is scoped to its conversation; messages without one are never deduplicated.
    other = await store.create_conversation(bot=_bot(), channel="web")
    assert (await store.add_user_message(other.id, "hello", channel_message_id="c-1"))[1]
    assert (await store.add_user_message(conversation.id, "x"))[1]
    assert (await store.add_user_message(conversation.id, "x"))[1]
    assert await store.count_messages(conversation.id) == 3


async def test_racing_duplicates_store_one_row(store: SQLConversationStore) -> None:
    conversation = await store.create_conversation(bot=_bot(), channel="slack")
    results = await asyncio.gather(
        *(store.add_user_message(conversation.id, "same", channel_message_id="ts-1") for _ in range(8))
    )
    assert sum(created for _, created in results) == 1
    assert len({message.id for message, _ in results}) == 1
    assert await store.count_messages(conversation.id) == 1


async def test_concurrent_messages_get_distinct_ordered_seqs(store: SQLConversationStore) -> None:
    conversation = await store.create_conversation(bot=_bot(), channel="web")
    await asyncio.gather(*(store.add_user_message(conversation.id, f"m{i}") for i in range(12)))
    history = await store.history(conversation.id, limit=50)
    assert [m.seq for m in history] == list(range(1, 13))


async def test_bot_message_and_stored_reply(store: SQLConversationStore) -> None:
    @dataclasses.dataclass
    class Citation:
        source_id: str
        title: str

    conversation = await store.create_conversation(bot=_bot(), channel="web")
    user, _ = await store.add_user_message(conversation.id, "How do I reset my password?", channel_message_id="c-9")
    assert await store.get_reply(user.id) is None
    reply = await store.add_bot_message(
        conversation.id,
        "Use the reset link [1].",
        reply_to=user.id,
        citations=[{"source_id": "kb/reset.md", "title": "Reset"}, Citation("kb/faq.csv", "FAQ")],
        backend="scripted",
        latency_ms=42,
        prompt_tokens=100,
        completion_tokens=12,
        abstained=False,
    )
    assert (reply.role, reply.seq, reply.reply_to, reply.backend) == ("assistant", 2, user.id, "scripted")
    assert reply.citations == [
        {"source_id": "kb/reset.md", "title": "Reset"},
        {"source_id": "kb/faq.csv", "title": "FAQ"},
    ]
    assert (reply.latency_ms, reply.prompt_tokens, reply.completion_tokens) == (42, 100, 12)
    assert reply.created_at is not None and reply.created_at.tzinfo == timezone.utc
    notice = await store.add_bot_message(conversation.id, "A person will reply.", reply_to=user.id, role="system")
    assert notice.abstained is False and notice.citations == []
    assert await store.get_reply(user.id) == reply  # the first reply wins
    assert await store.get_message(reply.id) == reply
    assert await store.get_message(10**9) is None
    with pytest.raises(ValueError, match="add_bot_message"):
        await store.add_bot_message(conversation.id, "x", reply_to=None, role="user")
    with pytest.raises(StoreError, match="does not exist"):
        await store.add_bot_message("missing", "x", reply_to=None)
    with pytest.raises(StoreError, match="does not exist"):
        await store.add_user_message("missing", "x")


async def test_history_is_a_bounded_ordered_window(store_url: str) -> None:
    engine = create_engine(store_url)
    statements: list[str] = []
    event.listen(engine.sync_engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    store = SQLConversationStore(engine)
    await store.open()
    try:
        conversation = await store.create_conversation(bot=_bot(), channel="web")
        for i in range(1, 21):
            await store.add_user_message(conversation.id, f"m{i}")
        statements.clear()
        window = await store.history(conversation.id, limit=5)
        assert [m.text for m in window] == ["m16", "m17", "m18", "m19", "m20"]
        assert [m.seq for m in window] == [16, 17, 18, 19, 20]
        (query,) = [s for s in statements if "FROM messages" in s]
        assert "ORDER BY messages.seq DESC" in query and "LIMIT" in query
        older = await store.history(conversation.id, limit=3, before_seq=16)
        assert [m.seq for m in older] == [13, 14, 15]
        assert await store.history(conversation.id, limit=0) == []
        assert len(await store.history(conversation.id, limit=100)) == 20
    finally:
        await store.close()
        await engine.dispose()


async def test_feedback(store: SQLConversationStore) -> None:
    conversation = await store.create_conversation(bot=_bot(), channel="web")
    user, _ = await store.add_user_message(conversation.id, "hi")
    reply = await store.add_bot_message(conversation.id, "hello", reply_to=user.id)
    on_reply = await store.add_feedback(conversation.id, -1, message_id=reply.id, comment="not helpful")
    overall = await store.add_feedback(conversation.id, 1)
    assert (on_reply.rating, on_reply.message_id, on_reply.comment) == (-1, reply.id, "not helpful")
    assert [f.id for f in await store.list_feedback(conversation_id=conversation.id)] == [overall.id, on_reply.id]
    with pytest.raises(ValueError, match="rating"):
        await store.add_feedback(conversation.id, 5)
    other = await store.create_conversation(bot=_bot(), channel="web")
    with pytest.raises(StoreError, match="not part of conversation"):
        await store.add_feedback(other.id, 1, message_id=reply.id)
    with pytest.raises(StoreError, match="does not exist"):
        await store.add_feedback("missing", 1)


async def test_processed_events_are_claimed_once(store: SQLConversationStore) -> None:
    event_id = uuid.uuid4().hex
    claims = await asyncio.gather(*(store.claim_event(channel="slack", event_id=event_id) for _ in range(5)))
    assert sorted(claims) == [False, False, False, False, True]
    assert await store.claim_event(channel="web", event_id=event_id)  # another channel's event
    await store.set_event_status(channel="slack", event_id=event_id, status="done")
    with pytest.raises(StoreError, match="never claimed"):
        await store.set_event_status(channel="slack", event_id="unknown", status="done")


async def test_store_accepts_an_engine_or_a_sessionmaker(store_url: str) -> None:
    from sqlalchemy.ext.asyncio import async_sessionmaker

    engine = create_engine(store_url)
    try:
        for bind in (engine, async_sessionmaker(engine, expire_on_commit=False)):
            async with SQLConversationStore(bind) as store:
                conversation = await store.create_conversation(bot=_bot(), channel="web")
                assert await store.get_conversation(conversation.id) == conversation
        # The caller's engine is still usable: the store disposed nothing it did not create.
        async with SQLConversationStore(engine) as store:
            assert await store.count_messages("missing") == 0
    finally:
        await engine.dispose()


async def test_a_store_must_be_opened(tmp_path: object) -> None:
    store = SQLConversationStore(f"sqlite:///{tmp_path}/never.db")
    with pytest.raises(StoreError, match=r"await store.open\(\)"):
        await store.get_conversation("x")
    with pytest.raises(StoreError, match="not open"):
        async with store.turn_lock("x", timeout=1):
            pass
    await store.close()  # closing an unopened store is fine


async def test_claiming_events_in_a_batch(store: SQLConversationStore) -> None:
    assert await store.claim_event(channel="slack", event_id="Ev0")
    claimed = await store.claim_events(
        channel="slack",
        events=[("Ev1", {"n": 1}), ("Ev0", None), ("Ev2", None), ("Ev1", {"n": 1}), ("Ev3", {"n": 3})],
    )
    assert claimed == [True, False, True, False, True]  # Ev0 before, Ev1 twice in the batch
    assert await store.claim_events(channel="slack", events=[]) == []
    assert not await store.claim_event(channel="slack", event_id="Ev3")
    assert await store.claim_events(channel="other", events=[("Ev1", None)]) == [True]  # channels apart
    taken = await store.pending_events(channel="slack", older_than_s=0)
    assert {e.event_id: e.payload for e in taken} == {"Ev0": None, "Ev1": {"n": 1}, "Ev2": None, "Ev3": {"n": 3}}
