"""The conversation store's contract: value objects and the :class:`ConversationStore` ABC.

The dialogue manager, the connectors and the agent console talk to the store only through
this interface; :class:`botkit.store.sql.SQLConversationStore` implements it over SQLite or
PostgreSQL. Every method is one unit of work (its own transaction). Every method may raise
:class:`~botkit.errors.StoreUnavailable` when the database cannot be reached (retry later)
and :class:`~botkit.errors.StoreError` for any other database failure.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, TypeVar

from botkit.errors import StoreError

ConversationState = Literal["bot", "handoff", "closed"]
"""``bot``: the bot answers; ``handoff``: a human holds it; ``closed``: finished."""
STATES: tuple[ConversationState, ...] = ("bot", "handoff", "closed")

Role = Literal["user", "assistant", "system", "agent"]
"""Who wrote a message: the end user, the bot, botkit itself, or a human agent."""
ROLES: tuple[Role, ...] = ("user", "assistant", "system", "agent")

_Store = TypeVar("_Store", bound="ConversationStore")

ORDER_POLL_S = 0.01  # first wait before a turn retakes the lock for an earlier message's turn
ORDER_POLL_MAX_S = 0.1
ORDER_LOOKBACK = 50  # messages read to find earlier unanswered ones (the default implementation)


@dataclass(frozen=True)
class Conversation:
    """One conversation of one user with one bot on one channel."""

    id: str
    bot: str
    channel: str
    external_id: str | None
    state: ConversationState
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class Message:
    """One stored message; bot replies carry their citations, backend and usage."""

    id: int
    conversation_id: str
    seq: int
    role: Role
    text: str
    citations: list[dict[str, Any]] = field(default_factory=list)
    backend: str | None = None
    latency_ms: int | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    channel_message_id: str | None = None
    reply_to: int | None = None
    abstained: bool = False
    created_at: datetime | None = None


@dataclass(frozen=True)
class Feedback:
    """A thumbs-up (+1) or thumbs-down (-1) on a conversation or one of its messages."""

    id: int
    conversation_id: str
    message_id: int | None
    rating: int
    comment: str | None
    created_at: datetime | None = None


@dataclass(frozen=True)
class PendingEvent:
    """A platform event claimed by a worker that never finished it (see ``pending_events``)."""

    channel: str
    event_id: str
    payload: dict[str, Any] | None
    created_at: datetime | None = None


@dataclass(frozen=True)
class UserTurn:
    """What a turn starts from (see :meth:`ConversationStore.user_turn`)."""

    conversation: Conversation
    """As read once the turn lock is held (as recorded when no lock is held)."""
    message: Message
    """The user message the turn answers."""
    created: bool
    """False when ``message`` was stored before (a resent channel message id)."""
    history: list[Message] = field(default_factory=list)
    """The conversation's last messages, oldest first, read inside the lock (``message`` included)."""
    reply: Message | None = None
    """A resent message's stored reply: the turn is already done and holds no lock."""


class ConversationStore(ABC):
    """Where conversations, messages, feedback and turn locks live.

    Lifecycle: the constructor does no I/O; ``await store.open()`` connects (and brings
    the schema up to date); ``await store.close()`` releases connections. A store is also
    an async context manager that opens and closes itself.
    """

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Connect and prepare the schema. Idempotent."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release every connection. Idempotent."""

    async def __aenter__(self: _Store) -> _Store:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- conversations -------------------------------------------------------------

    @abstractmethod
    async def create_conversation(
        self,
        *,
        bot: str,
        channel: str,
        external_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        conversation_id: str | None = None,
    ) -> Conversation:
        """Create a conversation in state ``bot`` with a new random URL-safe id, or with
        ``conversation_id`` when the caller names it (``Bot.reply`` with an id not seen
        before: 1 to 64 letters, digits, ``-`` or ``_``, else :class:`ValueError`).
        Raises :class:`StoreError` when that id is taken."""

    @abstractmethod
    async def get_conversation(self, conversation_id: str) -> Conversation | None:
        """The conversation with this id, or ``None``."""

    @abstractmethod
    async def find_conversation(self, *, bot: str, channel: str, external_id: str) -> Conversation | None:
        """The most recently created conversation that is not ``closed`` for this
        (bot, channel, external id), or ``None`` (the caller then creates one)."""

    @abstractmethod
    async def set_state(self, conversation_id: str, state: ConversationState) -> Conversation:
        """Move a conversation to ``state`` and return it.

        Raises :class:`ValueError` for an unknown state and :class:`StoreError` when the
        conversation does not exist.
        """

    @abstractmethod
    async def update_metadata(self, conversation_id: str, patch: Mapping[str, Any]) -> Conversation:
        """Merge ``patch`` into the conversation's metadata (shallow; a ``None`` value
        removes the key), atomically with respect to concurrent updates."""

    @abstractmethod
    async def list_conversations(
        self,
        *,
        bot: str | None = None,
        state: ConversationState | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Conversation]:
        """Conversations, most recently active first, optionally filtered."""

    # -- messages ------------------------------------------------------------------

    @abstractmethod
    async def add_user_message(
        self, conversation_id: str, text: str, *, channel_message_id: str | None = None
    ) -> tuple[Message, bool]:
        """Record a user message; return ``(message, created)``.

        Idempotent on ``channel_message_id`` (the platform's or client's id of the
        message): when it is already stored for this conversation, the stored message is
        returned with ``created=False`` and nothing is written. This holds when two
        processes record the same message at once (the database's unique constraint
        decides, not a check-then-insert).
        """

    async def record_user_message(
        self,
        conversation_id: str,
        text: str,
        *,
        bot: str,
        channel: str,
        external_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        channel_message_id: str | None = None,
    ) -> tuple[Conversation, Message, bool]:
        """A turn's first write: :meth:`add_user_message` in conversation ``conversation_id``,
        starting it first (as :meth:`create_conversation` with ``bot``, ``channel``,
        ``external_id`` and ``metadata``) when no such conversation exists. Returns
        ``(conversation, message, created)``, ``created`` as in :meth:`add_user_message`.

        The default is :meth:`get_conversation`, then :meth:`create_conversation` if
        needed (a concurrent start of the same id is tolerated), then
        :meth:`add_user_message`; a store may do it all in one unit of work.
        """
        conversation = await self.get_conversation(conversation_id)
        if conversation is None:
            try:
                conversation = await self.create_conversation(
                    bot=bot, channel=channel, external_id=external_id, metadata=metadata,
                    conversation_id=conversation_id,
                )
            except StoreError:  # started by a concurrent turn with the same new id
                conversation = await self.get_conversation(conversation_id)
                if conversation is None:
                    raise
        message, created = await self.add_user_message(conversation_id, text, channel_message_id=channel_message_id)
        return conversation, message, created

    @abstractmethod
    async def add_bot_message(
        self,
        conversation_id: str,
        text: str,
        *,
        reply_to: int | None,
        role: Role = "assistant",
        citations: Sequence[Mapping[str, Any] | Any] = (),
        backend: str | None = None,
        latency_ms: int | None = None,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        abstained: bool = False,
        channel_message_id: str | None = None,
    ) -> Message:
        """Record a message that is not the user's: a bot reply (``assistant``), a
        notice (``system``) or a human agent's reply (``agent``).

        ``reply_to`` is the id of the user message it answers. ``citations`` are JSON
        objects (mappings, dataclasses or pydantic models are converted).
        """

    async def add_turn_reply(
        self,
        conversation_id: str,
        text: str,
        *,
        reply_to: int,
        citations: Sequence[Mapping[str, Any] | Any] = (),
        backend: str | None = None,
        latency_ms: int | None = None,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        abstained: bool = False,
    ) -> Message:
        """Record the bot reply that ends a turn (as :meth:`add_bot_message` with role
        ``assistant``), from inside that turn's :meth:`turn` block, as its last write.

        The store may release the conversation's turn lock in the same unit of work: the
        next turn (on any worker) may start once the reply is stored, and the block's exit
        has nothing left to release. The default is :meth:`add_bot_message`.
        """
        return await self.add_bot_message(
            conversation_id, text, reply_to=reply_to, citations=citations, backend=backend, latency_ms=latency_ms,
            prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, abstained=abstained,
        )

    @abstractmethod
    async def get_message(self, message_id: int) -> Message | None:
        """The message with this id, or ``None``."""

    @abstractmethod
    async def get_reply(self, message_id: int) -> Message | None:
        """The first stored message that replies to user message ``message_id``, or
        ``None``: what a resent client message id gets back instead of a new turn."""

    @abstractmethod
    async def history(self, conversation_id: str, *, limit: int, before_seq: int | None = None) -> list[Message]:
        """The last ``limit`` messages (before ``before_seq`` when given), oldest first.

        A bounded query: a long conversation is never loaded whole.
        """

    @abstractmethod
    async def count_messages(self, conversation_id: str) -> int:
        """How many messages the conversation holds."""

    # -- feedback --------------------------------------------------------------------

    @abstractmethod
    async def add_feedback(
        self, conversation_id: str, rating: int, *, message_id: int | None = None, comment: str | None = None
    ) -> Feedback:
        """Record a rating (+1 or -1, else :class:`ValueError`), on one message of the
        conversation when ``message_id`` is given."""

    @abstractmethod
    async def list_feedback(
        self, *, conversation_id: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[Feedback]:
        """Feedback, newest first, optionally for one conversation."""

    # -- connectors' exactly-once delivery ---------------------------------------------

    @abstractmethod
    async def claim_event(self, *, channel: str, event_id: str, payload: Mapping[str, Any] | None = None) -> bool:
        """Record a platform event as being processed (status ``pending``), with its
        ``payload`` (JSON) so that another worker can finish it; ``False`` if it already
        was claimed (a redelivery to drop). Race-safe across processes."""

    async def claim_events(
        self, *, channel: str, events: Sequence[tuple[str, Mapping[str, Any] | None]]
    ) -> list[bool]:
        """:meth:`claim_event` for several ``(event_id, payload)`` at once (one transaction
        where the store can): for each, whether this call claimed it. The default claims
        them one by one."""
        return [await self.claim_event(channel=channel, event_id=e, payload=p) for e, p in events]

    @abstractmethod
    async def set_event_status(self, *, channel: str, event_id: str, status: str) -> None:
        """Update a claimed event's status (``done`` or ``failed``)."""

    @abstractmethod
    async def pending_events(self, *, channel: str, older_than_s: float, limit: int = 100) -> list[PendingEvent]:
        """Take over events still ``pending`` more than ``older_than_s`` seconds after
        their claim (the worker that claimed them died), oldest first.

        Each returned event's claim is renewed in the same transaction, so two workers
        recovering at once never take the same event; an event that is still pending
        after another ``older_than_s`` seconds is returned again.
        """

    # -- turn lock -------------------------------------------------------------------

    @abstractmethod
    def turn_lock(self, conversation_id: str, *, timeout: float) -> AbstractAsyncContextManager[None]:
        """Hold the conversation's turn lock for the ``async with`` block.

        Turns of one conversation run one at a time, across tasks and processes; other
        conversations never wait. Waits at most ``timeout`` seconds, then raises
        :class:`~botkit.errors.ConversationLocked`. A holder that dies does not keep the
        lock: it is released when its connection drops (PostgreSQL) or its lease runs
        out (SQLite), so a waiter with a timeout longer than the lease gets it.
        """

    @asynccontextmanager
    async def turn(
        self, conversation_id: str, *, timeout: float, message: Message | None = None
    ) -> AsyncIterator[Conversation | None]:
        """Hold the turn lock (as :meth:`turn_lock`) and give the block the conversation
        as read once the lock is held (``None`` if it does not exist).

        What a turn starts with: its state must be read inside the lock, since a human may
        have taken the conversation over while the turn waited.

        ``message`` (the user message the turn answers) keeps answers in recorded order:
        while an earlier user message of the conversation, recorded less than ``timeout``
        seconds ago and after the last bot or agent message, has no reply yet (its turn is
        still waiting for the lock, e.g. on another worker), the lock is handed back and
        taken again, for at most ``timeout`` seconds in all. Two messages arriving at the
        same instant on two workers are thus answered in the order they were stored; an
        earlier message whose turn died stops holding later ones back after ``timeout``.

        The default is :meth:`turn_lock`, :meth:`get_conversation` and :meth:`history`; a
        store may do the reads in the lock's own round trip.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        delay = ORDER_POLL_S
        while True:
            async with self.turn_lock(conversation_id, timeout=max(deadline - loop.time(), ORDER_POLL_S)):
                conversation = await self.get_conversation(conversation_id)
                if (
                    message is None
                    or conversation is None
                    or conversation.state == "handoff"
                    or loop.time() >= deadline
                    or not await self._earlier_unanswered(conversation_id, message, timeout)
                ):
                    yield conversation
                    return
            await asyncio.sleep(min(delay, max(deadline - loop.time(), 0)))
            delay = min(delay * 2, ORDER_POLL_MAX_S)

    @asynccontextmanager
    async def turn_with_history(
        self, conversation_id: str, *, timeout: float, message: Message | None = None, history: int
    ) -> AsyncIterator[tuple[Conversation | None, list[Message]]]:
        """:meth:`turn`, also giving the block the conversation's last ``history`` messages
        (oldest first, as :meth:`history`) read once the lock is held: what a turn answers
        from. The window is empty when the conversation does not exist or a human holds it.

        The default is :meth:`turn`, then :meth:`history`; a store may read the window in
        the lock's own round trip.
        """
        async with self.turn(conversation_id, timeout=timeout, message=message) as conversation:
            window: list[Message] = []
            if conversation is not None and conversation.state != "handoff" and history > 0:
                window = await self.history(conversation_id, limit=history)
            yield conversation, window

    @asynccontextmanager
    async def user_turn(
        self,
        conversation_id: str,
        text: str,
        *,
        bot: str,
        channel: str,
        external_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        channel_message_id: str | None = None,
        timeout: float,
        history: int,
    ) -> AsyncIterator[UserTurn]:
        """A turn's start, in order: record the user message (:meth:`record_user_message`),
        then hold the turn lock for the block (:meth:`turn_with_history`, ``message`` being
        the recorded one), giving the block a :class:`UserTurn`.

        A message stored before (``created`` false) whose reply is stored too gets that
        reply in ``UserTurn.reply``, before the lock is taken or once it is held (the turn
        that wrote it may have ended while this one waited); the block should then answer
        with it and do nothing else.

        The default composes those methods; a store may record the message and take a free
        lock in one unit of work.
        """
        conversation, message, created = await self.record_user_message(
            conversation_id, text, bot=bot, channel=channel, external_id=external_id, metadata=metadata,
            channel_message_id=channel_message_id,
        )
        if not created:
            reply = await self.get_reply(message.id)
            if reply is not None:
                yield UserTurn(conversation, message, created, reply=reply)
                return
        async with self.turn_with_history(conversation_id, timeout=timeout, message=message, history=history) as found:
            fresh, window = found
            reply = None if created else await self.get_reply(message.id)
            yield UserTurn(fresh or conversation, message, created, window, reply)

    async def _earlier_unanswered(self, conversation_id: str, message: Message, window_s: float) -> bool:
        """Whether a user message recorded before ``message`` (within ``window_s``, after
        the last bot or agent message) still waits for its reply."""
        recent = await self.history(conversation_id, limit=ORDER_LOOKBACK)  # replies may follow `message`
        since = datetime.now(timezone.utc) - timedelta(seconds=window_s)
        answered = {m.reply_to for m in recent if m.reply_to is not None}
        for earlier in reversed([m for m in recent if m.seq < message.seq]):
            if earlier.role != "user":
                return False
            if earlier.id not in answered and (earlier.created_at is None or earlier.created_at >= since):
                return True
        return False
