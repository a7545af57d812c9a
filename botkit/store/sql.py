"""The SQLAlchemy (async) conversation store: a SQLite file by default, PostgreSQL to scale."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import Executable, Row, Table, func, insert, select, update
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from botkit.errors import ConfigError, StoreError
from botkit.store.base import (
    ROLES,
    STATES,
    Conversation,
    ConversationState,
    ConversationStore,
    Feedback,
    Message,
    PendingEvent,
    Role,
)
from botkit.store.engine import WRITE, create_engine, install_sqlite_hooks, translate, translating
from botkit.store.locks import TurnLocks
from botkit.store.models import ConversationRow, FeedbackRow, MessageRow, ProcessedEventRow
from botkit.store.rows import aware, json_object, now, to_conversation, to_feedback, to_message
from botkit.store.urls import is_sqlite, normalize_database_url

_conversations = cast(Table, ConversationRow.__table__)
_messages = cast(Table, MessageRow.__table__)
_feedback = cast(Table, FeedbackRow.__table__)
_events = cast(Table, ProcessedEventRow.__table__)
C, M, F, E = _conversations.c, _messages.c, _feedback.c, _events.c

DEFAULT_LEASE_S = 10.0
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class SQLConversationStore(ConversationStore):
    """:class:`ConversationStore` over SQLAlchemy's asyncio engine.

    ``bind`` is a database URL (``sqlite:///data/botkit.db``, ``postgresql://user@host/db``;
    see :func:`~botkit.store.urls.normalize_database_url`), an :class:`AsyncEngine` (build it
    with :func:`botkit.store.create_engine`) or an ``async_sessionmaker`` bound to one; the
    store disposes only an engine it created. ``open()`` brings the schema to the packaged
    head unless ``migrate=False``. ``lock_lease_s``: how long a dead holder can keep a
    conversation locked on SQLite (keep it below the lock timeout).
    ``max_turn_connections``: PostgreSQL connections held by turn locks, at most.
    """

    def __init__(
        self,
        bind: str | URL | AsyncEngine | async_sessionmaker[AsyncSession],
        *,
        migrate: bool = True,
        lock_lease_s: float = DEFAULT_LEASE_S,
        max_turn_connections: int = 50,
    ) -> None:
        if lock_lease_s <= 0:
            raise ValueError(f"lock_lease_s must be positive, got {lock_lease_s!r}")
        self._url: URL | None = None
        self._given: AsyncEngine | async_sessionmaker[AsyncSession] | None = None
        if isinstance(bind, (str, URL)):
            self._url = normalize_database_url(bind)
        elif isinstance(bind, (AsyncEngine, async_sessionmaker)):
            self._given = bind
        else:
            raise TypeError(f"bind must be a URL, an AsyncEngine or an async_sessionmaker, not {type(bind).__name__}")
        self._migrate = migrate
        self._lease_s = lock_lease_s
        self._max_turn_connections = max_turn_connections
        self._engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None
        self._locks: TurnLocks | None = None

    @classmethod
    def from_config(cls, config: Any, **kwargs: Any) -> SQLConversationStore:
        """The store for a :class:`~botkit.config.BotConfig` (its ``resolved_database_url``)."""
        return cls(config.resolved_database_url, **kwargs)

    @property
    def url(self) -> URL | None:
        """The database URL (normalised), once known."""
        return self._engine.url if self._engine is not None else self._url

    async def open(self) -> None:
        """Create the engine and apply pending migrations. Idempotent."""
        if self._sessions is not None:
            return
        sessions = self._given if isinstance(self._given, async_sessionmaker) else None
        bound = sessions.kw.get("bind") if sessions is not None else self._given
        if bound is not None and not isinstance(bound, AsyncEngine):
            raise ConfigError("the async_sessionmaker given to SQLConversationStore must be bound to an AsyncEngine")
        if bound is None:
            assert self._url is not None
            async with translating("open the conversation store", self._url):
                engine = create_engine(self._url)  # creates the SQLite file's folder
        else:
            engine = bound
            if is_sqlite(engine.url):
                install_sqlite_hooks(engine)
        try:
            if self._migrate:
                from botkit.store.migrate import ensure_schema

                await ensure_schema(engine)
        except BaseException:
            if self._url is not None:
                await engine.dispose()
            raise
        self._engine = engine
        self._locks = TurnLocks(engine, lease_s=self._lease_s, max_connections=self._max_turn_connections)
        self._sessions = sessions or async_sessionmaker(engine, expire_on_commit=False)

    async def close(self) -> None:
        """Dispose the engines this store created. Idempotent."""
        engine, locks = self._engine, self._locks
        self._engine, self._locks, self._sessions = None, None, None
        if locks is not None:
            await locks.close()
        if engine is not None and self._url is not None:
            await engine.dispose()

    @asynccontextmanager
    async def _unit(
        self, action: str, *, write: bool = False, passthrough: tuple[type[BaseException], ...] = ()
    ) -> AsyncIterator[AsyncSession]:
        """One transaction; on SQLite a writing one takes the write lock first (BEGIN IMMEDIATE)."""
        if self._sessions is None:
            raise StoreError("the conversation store is not open", hint="call `await store.open()` first")
        async with translating(action, self.url, passthrough=passthrough):
            async with self._sessions() as session, session.begin():
                if write:
                    await session.connection(execution_options={WRITE: True})
                yield session

    async def _first(self, action: str, statement: Executable, *, write: bool = False) -> Row[Any] | None:
        async with self._unit(action, write=write) as session:
            return (await session.execute(statement)).first()

    async def _all(self, action: str, statement: Executable) -> Sequence[Row[Any]]:
        async with self._unit(action) as session:
            return (await session.execute(statement)).all()

    # -- conversations -------------------------------------------------------------------

    async def create_conversation(
        self,
        *,
        bot: str,
        channel: str,
        external_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        conversation_id: str | None = None,
    ) -> Conversation:
        if conversation_id is not None and not _ID.fullmatch(conversation_id):
            raise ValueError(f"a conversation id is 1 to 64 letters, digits, '-' or '_', got {conversation_id!r}")
        at = now()
        values: dict[str, Any] = {"id": conversation_id or uuid.uuid4().hex, "bot": bot, "channel": channel}
        values.update(state="bot", external_id=external_id, metadata=dict(metadata or {}), last_seq=0)
        values.update(created_at=at, updated_at=at)
        statement = insert(_conversations).values(values).returning(*_conversations.c)
        try:
            async with self._unit("create a conversation", write=True, passthrough=(IntegrityError,)) as session:
                row = (await session.execute(statement)).one()
        except IntegrityError as exc:
            raise StoreError(f"conversation id {values['id']!r} is already taken") from exc
        return to_conversation(row)

    async def get_conversation(self, conversation_id: str) -> Conversation | None:
        row = await self._first("read a conversation", select(_conversations).where(C.id == conversation_id))
        return None if row is None else to_conversation(row)

    async def find_conversation(self, *, bot: str, channel: str, external_id: str) -> Conversation | None:
        query = (
            select(_conversations)
            .where(C.bot == bot, C.channel == channel, C.external_id == external_id, C.state != "closed")
            .order_by(C.created_at.desc())
            .limit(1)
        )
        row = await self._first("find a conversation", query)
        return None if row is None else to_conversation(row)

    async def set_state(self, conversation_id: str, state: ConversationState) -> Conversation:
        if state not in STATES:
            raise ValueError(f"unknown conversation state {state!r}; known: {', '.join(STATES)}")
        statement = update(_conversations).where(C.id == conversation_id).values(state=state, updated_at=now())
        row = await self._first("change a conversation's state", statement.returning(*_conversations.c), write=True)
        if row is None:
            raise _no_conversation(conversation_id)
        return to_conversation(row)

    async def update_metadata(self, conversation_id: str, patch: Mapping[str, Any]) -> Conversation:
        async with self._unit("update a conversation's metadata", write=True) as session:
            query = select(C["metadata"]).where(C.id == conversation_id).with_for_update()
            current = await session.scalar(query)
            if current is None:
                raise _no_conversation(conversation_id)
            merged = {key: value for key, value in {**current, **patch}.items() if value is not None}
            statement = update(_conversations).where(C.id == conversation_id)
            statement = statement.values({"metadata": merged, "updated_at": now()}).returning(*_conversations.c)
            row = (await session.execute(statement)).one()
        return to_conversation(row)

    async def list_conversations(
        self, *, bot: str | None = None, state: ConversationState | None = None, limit: int = 50, offset: int = 0
    ) -> list[Conversation]:
        query = select(_conversations).order_by(C.updated_at.desc(), C.id.desc())
        query = query.limit(_positive(limit)).offset(max(offset, 0))
        if bot is not None:
            query = query.where(C.bot == bot)
        if state is not None:
            query = query.where(C.state == state)
        return [to_conversation(row) for row in await self._all("list conversations", query)]

    # -- messages ------------------------------------------------------------------------

    async def add_user_message(
        self, conversation_id: str, text: str, *, channel_message_id: str | None = None
    ) -> tuple[Message, bool]:
        action = "record a user message"
        values = {"role": "user", "text": text, "channel_message_id": channel_message_id}
        try:
            async with self._unit(action, write=True, passthrough=(IntegrityError,)) as session:
                row = await _insert_message(session, conversation_id, values)
        except IntegrityError as exc:
            # Lost the race on (conversation_id, channel_message_id): return the winner's row.
            existing = None
            if channel_message_id is not None:
                query = select(_messages).where(
                    M.conversation_id == conversation_id, M.channel_message_id == channel_message_id
                )
                existing = await self._first(action, query)
            if existing is None:
                raise translate(exc, action, self.url) from exc
            return to_message(existing), False
        return to_message(row), True

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
        if role not in ROLES or role == "user":
            raise ValueError(f"add_bot_message records assistant, system or agent messages, not {role!r}")
        values = {
            "role": role,
            "text": text,
            "reply_to": reply_to,
            "citations": [json_object(citation) for citation in citations],
            "backend": backend,
            "latency_ms": latency_ms,
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "abstained": abstained,
            "channel_message_id": channel_message_id,
        }
        async with self._unit(f"record an {role} message", write=True) as session:
            return to_message(await _insert_message(session, conversation_id, values))

    async def get_message(self, message_id: int) -> Message | None:
        row = await self._first("read a message", select(_messages).where(M.id == message_id))
        return None if row is None else to_message(row)

    async def get_reply(self, message_id: int) -> Message | None:
        query = select(_messages).where(M.reply_to == message_id).order_by(M.seq).limit(1)
        row = await self._first("read a stored reply", query)
        return None if row is None else to_message(row)

    async def history(self, conversation_id: str, *, limit: int, before_seq: int | None = None) -> list[Message]:
        if limit <= 0:
            return []
        query = select(_messages).where(M.conversation_id == conversation_id).order_by(M.seq.desc()).limit(limit)
        if before_seq is not None:
            query = query.where(M.seq < before_seq)
        rows = await self._all("read the conversation history", query)
        return [to_message(row) for row in reversed(rows)]

    async def count_messages(self, conversation_id: str) -> int:
        query = select(func.count()).select_from(_messages).where(M.conversation_id == conversation_id)
        row = await self._first("count messages", query)
        return int(row[0]) if row is not None else 0

    # -- feedback ------------------------------------------------------------------------

    async def add_feedback(
        self, conversation_id: str, rating: int, *, message_id: int | None = None, comment: str | None = None
    ) -> Feedback:
        if rating not in (1, -1):
            raise ValueError(f"rating must be 1 or -1, got {rating!r}")
        async with self._unit("record feedback", write=True) as session:
            if message_id is not None:
                owner = await session.scalar(select(M.conversation_id).where(M.id == message_id))
                if owner != conversation_id:
                    raise StoreError(f"message {message_id} is not part of conversation {conversation_id!r}")
            elif await session.scalar(select(C.id).where(C.id == conversation_id)) is None:
                raise _no_conversation(conversation_id)
            values: dict[str, Any] = {"conversation_id": conversation_id, "message_id": message_id, "rating": rating}
            values.update(comment=comment, created_at=now())
            statement = insert(_feedback).values(values).returning(*_feedback.c)
            return to_feedback((await session.execute(statement)).one())

    async def list_feedback(
        self, *, conversation_id: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[Feedback]:
        query = select(_feedback).order_by(F.created_at.desc(), F.id.desc()).limit(_positive(limit))
        query = query.offset(max(offset, 0))
        if conversation_id is not None:
            query = query.where(F.conversation_id == conversation_id)
        return [to_feedback(row) for row in await self._all("list feedback", query)]

    # -- processed events ----------------------------------------------------------------

    async def claim_event(self, *, channel: str, event_id: str, payload: Mapping[str, Any] | None = None) -> bool:
        at = now()
        values = {"channel": channel, "event_id": event_id, "status": "pending", "created_at": at, "claimed_at": at}
        values["payload"] = None if payload is None else dict(payload)
        try:
            async with self._unit("claim an event", write=True, passthrough=(IntegrityError,)) as session:
                await session.execute(insert(_events).values(values))
        except IntegrityError:
            return False
        return True

    async def set_event_status(self, *, channel: str, event_id: str, status: str) -> None:
        statement = update(_events).where(E.channel == channel, E.event_id == event_id).values(status=status)
        row = await self._first("update an event's status", statement.returning(E.event_id), write=True)
        if row is None:
            raise StoreError(f"event {event_id!r} of channel {channel!r} was never claimed", hint="claim it first")

    async def pending_events(self, *, channel: str, older_than_s: float, limit: int = 100) -> list[PendingEvent]:
        at = now()
        query = (
            select(E.event_id, E.payload, E.created_at)
            .where(E.channel == channel, E.status == "pending", E.claimed_at < at - timedelta(seconds=older_than_s))
            .order_by(E.claimed_at)
            .limit(_positive(limit))
            .with_for_update(skip_locked=True)  # PostgreSQL; SQLite serialises writers instead
        )
        async with self._unit("take over pending events", write=True) as session:
            rows = (await session.execute(query)).all()
            if rows:
                taken = update(_events).where(E.channel == channel, E.event_id.in_([row.event_id for row in rows]))
                await session.execute(taken.values(claimed_at=at))
        return [PendingEvent(channel, row.event_id, row.payload, aware(row.created_at)) for row in rows]

    # -- turn lock -----------------------------------------------------------------------

    @asynccontextmanager
    async def turn_lock(self, conversation_id: str, *, timeout: float) -> AsyncIterator[None]:
        if self._locks is None:
            raise StoreError("the conversation store is not open", hint="call `await store.open()` first")
        async with self._locks.hold(conversation_id, timeout):
            yield


async def _insert_message(session: AsyncSession, conversation_id: str, values: dict[str, Any]) -> Row[Any]:
    """Insert a message numbered by the conversation's counter (its row stays locked until commit)."""
    at = now()
    counter = update(_conversations).where(C.id == conversation_id).values(last_seq=C.last_seq + 1, updated_at=at)
    seq = await session.scalar(counter.returning(C.last_seq))
    if seq is None:
        raise _no_conversation(conversation_id)
    values = {"citations": [], "abstained": False, **values, "conversation_id": conversation_id, "seq": seq}
    statement = insert(_messages).values(values | {"created_at": at}).returning(*_messages.c)
    return (await session.execute(statement)).one()


def _positive(limit: int) -> int:
    if limit <= 0:
        raise ValueError(f"limit must be positive, got {limit}")
    return limit


def _no_conversation(conversation_id: str) -> StoreError:
    return StoreError(f"conversation {conversation_id!r} does not exist")
