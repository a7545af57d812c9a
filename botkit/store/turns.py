"""The SQL store's turn path, as functions of its units of work and turn locks.

A turn costs the store two units of work on SQLite (see
:meth:`~botkit.store.base.ConversationStore.user_turn` and
:meth:`~botkit.store.base.ConversationStore.add_turn_reply`): the user message with the
lock and the turn's first read, then the reply with the lock's release. These functions
hold that logic; :class:`~botkit.store.sql.SQLConversationStore` calls them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from typing import Any

from sqlalchemy.exc import IntegrityError

from botkit.store import queries as q
from botkit.store.base import ORDER_POLL_MAX_S, ORDER_POLL_S, Conversation, Message, UserTurn
from botkit.store.locks import TurnLocks
from botkit.store.rows import to_conversation, to_message
from botkit.store.units import Units

ReadWindow = Callable[[str, int], Awaitable[list[Message]]]
"""``history(conversation_id, limit)``: the store's bounded history read."""


def new_user_message(
    text: str, *, bot: str, channel: str, external_id: str | None, metadata: Mapping[str, Any] | None,
    channel_message_id: str | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The columns of a user message and of its conversation, should it have to be started."""
    values = q.message_values(role="user", text=text, channel_message_id=channel_message_id)
    start = {"bot": bot, "channel": channel, "state": "bot", "external_id": external_id, "metadata": dict(metadata or {})}
    return values, start


async def record_message(
    units: Units, conversation_id: str, values: dict[str, Any], start: dict[str, Any]
) -> tuple[Conversation, Message] | None:
    """The user message (and its conversation, started if new) in one unit of work; ``None``
    for a resent message (its channel message id is stored: nothing was written)."""
    try:
        conversation, message = await units.run(
            "record a user message", q.record_user_message, conversation_id, values, start, write=True,
            passthrough=(IntegrityError,),
        )
    except IntegrityError:
        return None
    return to_conversation(conversation), to_message(message)


@asynccontextmanager
async def hold_turn(
    locks: TurnLocks, conversation_id: str, timeout: float, message: Message | None, history: int,
    read_window: ReadWindow,
) -> AsyncIterator[tuple[Conversation | None, list[Message]]]:
    """The turn lock with the conversation and its last ``history`` messages as read in the
    lock's own round trip; with ``message``, handed back and retaken while an earlier
    message waits for its turn (see :meth:`ConversationStore.turn`)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = ORDER_POLL_S
    read_turn = partial(
        q.read_turn, conversation_id=conversation_id, seq=None if message is None else message.seq,
        window_s=timeout, history=history,
    )
    while True:
        async with locks.hold(conversation_id, max(deadline - loop.time(), ORDER_POLL_S), read_turn) as found:
            row, earlier_waiting, rows = found if found is not None else (None, False, [])
            if not earlier_waiting or loop.time() >= deadline:
                if earlier_waiting and history > 0:  # gave up waiting: the read skipped the window
                    window = await read_window(conversation_id, history)
                else:
                    window = [to_message(r) for r in reversed(rows)]
                yield (None if row is None else to_conversation(row)), window
                return
        await asyncio.sleep(min(delay, max(deadline - loop.time(), 0)))
        delay = min(delay * 2, ORDER_POLL_MAX_S)


@asynccontextmanager
async def begin_turn(
    locks: TurnLocks, conversation_id: str, values: dict[str, Any], start: dict[str, Any], *,
    timeout: float, history: int, read_window: ReadWindow,
    default: Callable[[], AbstractAsyncContextManager[UserTurn]],
) -> AsyncIterator[UserTurn]:
    """A turn's start (:meth:`ConversationStore.user_turn`) on SQLite: when the lock is free
    right then, the message (written first), the lease and the first read in one unit of
    work; a resent message takes ``default()``, and a busy lock or an earlier message still
    waiting for its turn the usual :func:`hold_turn` once the message is recorded."""
    read = partial(q.read_turn_after_record, window_s=timeout, history=history)
    try:
        taken = await locks.write_then_try(
            conversation_id, "record a user message", q.record_user_message, (conversation_id, values, start), read,
            passthrough=(IntegrityError,),
        )
    except IntegrityError:  # a resent message (its channel message id is stored): nothing was written
        taken = None
    if taken is None:
        async with default() as turn:
            yield turn
        return
    (recorded, row), lease, found = taken
    message, conversation = to_message(row), to_conversation(recorded)
    if lease is not None:
        fresh, earlier_waiting, rows = found
        async with locks.holding(conversation_id, lease):
            if not earlier_waiting:
                window = [to_message(r) for r in reversed(rows)]
                yield UserTurn(to_conversation(fresh) if fresh is not None else conversation, message, True, window)
                return
        # An earlier message still waits for its turn: hand the lock back, as turn() does.
    async with hold_turn(locks, conversation_id, timeout, message, history, read_window) as (fresh_conversation, window):
        yield UserTurn(fresh_conversation or conversation, message, True, window)
