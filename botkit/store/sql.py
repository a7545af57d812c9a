"""The SQLAlchemy (async) conversation store: a SQLite file by default, PostgreSQL to scale."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import Executable, Row, select
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from botkit.errors import ConfigError, StoreError
from botkit.store import queries as q
from botkit.store import turns
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
    UserTurn,
)
from botkit.store.engine import WRITE, create_engine, install_sqlite_hooks, translate, translating
from botkit.store.locks import TurnLocks
from botkit.store.queries import C, F
from botkit.store.rows import json_object, now, to_conversation, to_feedback, to_message
from botkit.store.units import AsyncUnits, ThreadUnits, Units, Work
from botkit.store.urls import is_sqlite, normalize_database_url

_T = TypeVar("_T")

DEFAULT_LEASE_S = 10.0
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class SQLConversationStore(ConversationStore):
    """:class:`ConversationStore` over SQLAlchemy's asyncio engine.

    ``bind`` is a database URL (``sqlite:///data/botkit.db``, ``postgresql://user@host/db``;
    see :func:`~botkit.store.urls.normalize_database_url`), an :class:`AsyncEngine` (build it
    with :func:`botkit.store.create_engine`) or an ``async_sessionmaker`` bound to one; the
    store disposes only an engine it created. ``open()`` brings the schema to the packaged
    head unless ``migrate=False``.

    ``lock_lease_s``: how long a dead holder can keep a conversation locked on SQLite (keep
    it below the lock timeout). ``max_connections``: PostgreSQL connections of the query pool,
    at most (default 15). ``max_turn_connections``: PostgreSQL connections held by turn
    locks, at most.

    Each method is one unit of work: a function of a connection run in one transaction
    (see :mod:`botkit.store.units`). On a SQLite file the store opens from a URL, each
    unit runs whole in a worker thread on a ``sqlite3`` connection (one thread hop per
    unit); PostgreSQL and engines handed in run on the async engine.
    """

    def __init__(
        self,
        bind: str | URL | AsyncEngine | async_sessionmaker[AsyncSession],
        *,
        migrate: bool = True,
        lock_lease_s: float = DEFAULT_LEASE_S,
        max_connections: int | None = None,
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
        self._max_connections = max_connections
        self._max_turn_connections = max_turn_connections
        self._engine: AsyncEngine | None = None
        self._units: Units | None = None
        self._locks: TurnLocks | None = None

    @classmethod
    def from_config(cls, config: Any, **kwargs: Any) -> SQLConversationStore:
        """The store for a :class:`~botkit.config.BotConfig` (its ``resolved_database_url`` and
        ``database_pool_size`` / ``database_max_turn_connections``)."""
        kwargs.setdefault("max_connections", config.database_pool_size)
        kwargs.setdefault("max_turn_connections", config.database_max_turn_connections)
        return cls(config.resolved_database_url, **kwargs)

    @property
    def url(self) -> URL | None:
        """The database URL (normalised), once known."""
        return self._engine.url if self._engine is not None else self._url

    async def open(self) -> None:
        """Create the engine and apply pending migrations. Idempotent."""
        if self._units is not None:
            return
        sessions = self._given if isinstance(self._given, async_sessionmaker) else None
        bound = sessions.kw.get("bind") if sessions is not None else self._given
        if bound is not None and not isinstance(bound, AsyncEngine):
            raise ConfigError("the async_sessionmaker given to SQLConversationStore must be bound to an AsyncEngine")
        if bound is None:
            assert self._url is not None
            async with translating("open the conversation store", self._url):
                engine = create_engine(self._url, max_connections=self._max_connections)  # makes SQLite's folder
        else:
            engine = bound
            if is_sqlite(engine.url):
                install_sqlite_hooks(engine)
        try:
            if self._migrate:
                from botkit.store.migrate import ensure_schema

                await ensure_schema(engine)
            units: Units
            if bound is None and is_sqlite(engine.url):
                units = ThreadUnits(engine.url)
                await engine.dispose()  # the migrations' connection; the units open their own
            else:
                units = AsyncUnits(engine)
        except BaseException:
            if self._url is not None:
                await engine.dispose()
            raise
        self._engine = engine
        self._units = units
        self._locks = TurnLocks(units, lease_s=self._lease_s, max_connections=self._max_turn_connections)

    async def close(self) -> None:
        """Dispose the engines this store created. Idempotent."""
        engine, units, locks = self._engine, self._units, self._locks
        self._engine, self._units, self._locks = None, None, None
        if locks is not None:
            await locks.close()
        if units is not None:
            await units.close()
        if engine is not None and self._url is not None:
            await engine.dispose()

    def _opened(self) -> tuple[Units, TurnLocks]:
        if self._units is None or self._locks is None:
            raise StoreError("the conversation store is not open", hint="call `await store.open()` first")
        return self._units, self._locks

    @asynccontextmanager
    async def _unit(self, action: str, *, write: bool = False) -> AsyncIterator[AsyncConnection]:
        """One ad-hoc transaction on the async engine (not used by the store's methods)."""
        self._opened()
        assert self._engine is not None
        async with translating(action, self.url), self._engine.connect() as connection:
            if write:
                await connection.execution_options(**{WRITE: True})
            async with connection.begin():
                yield connection

    async def _run(
        self, action: str, work: Work[_T], *args: Any, write: bool = False,
        passthrough: tuple[type[BaseException], ...] = (),
    ) -> _T:
        return await self._opened()[0].run(action, work, *args, write=write, passthrough=passthrough)

    async def _first(
        self, action: str, statement: Executable, params: dict[str, Any], *, write: bool = False,
        passthrough: tuple[type[BaseException], ...] = (),
    ) -> Row[Any] | None:
        """The first row of one statement (its own transaction)."""
        rows = await self._opened()[0].execute(action, statement, params, write=write, passthrough=passthrough)
        return rows[0] if rows else None

    async def _all(
        self, action: str, statement: Executable, params: dict[str, Any] | None = None
    ) -> Sequence[Row[Any]]:
        """The rows of one read-only statement."""
        return await self._opened()[0].execute(action, statement, params)

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
        try:
            row = await self._first(
                "create a conversation", q.CREATE_CONVERSATION, values, write=True, passthrough=(IntegrityError,)
            )
        except IntegrityError as exc:
            raise StoreError(f"conversation id {values['id']!r} is already taken") from exc
        assert row is not None  # INSERT ... RETURNING
        return to_conversation(row)

    async def get_conversation(self, conversation_id: str) -> Conversation | None:
        row = await self._first("read a conversation", q.GET_CONVERSATION, {"cid": conversation_id})
        return None if row is None else to_conversation(row)

    async def find_conversation(self, *, bot: str, channel: str, external_id: str) -> Conversation | None:
        params = {"bot": bot, "channel": channel, "external_id": external_id}
        row = await self._first("find a conversation", q.FIND_CONVERSATION, params)
        return None if row is None else to_conversation(row)

    async def set_state(self, conversation_id: str, state: ConversationState) -> Conversation:
        if state not in STATES:
            raise ValueError(f"unknown conversation state {state!r}; known: {', '.join(STATES)}")
        params = {"cid": conversation_id, "new_state": state, "at": now()}
        row = await self._first("change a conversation's state", q.SET_STATE, params, write=True)
        if row is None:
            raise q.no_conversation(conversation_id)
        return to_conversation(row)

    async def update_metadata(self, conversation_id: str, patch: Mapping[str, Any]) -> Conversation:
        row = await self._run(
            "update a conversation's metadata", q.merge_metadata, conversation_id, dict(patch), write=True
        )
        return to_conversation(row)

    async def list_conversations(
        self, *, bot: str | None = None, state: ConversationState | None = None, limit: int = 50, offset: int = 0
    ) -> list[Conversation]:
        query = select(q.conversations).order_by(C.updated_at.desc(), C.id.desc())
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
        values = q.message_values(role="user", text=text, channel_message_id=channel_message_id)
        try:
            row = await self._insert_message(action, conversation_id, values, passthrough=(IntegrityError,))
        except IntegrityError as exc:
            # Lost the race on (conversation_id, channel_message_id): return the winner's row.
            existing = None
            if channel_message_id is not None:
                params = {"cid": conversation_id, "channel_message_id": channel_message_id}
                existing = await self._first(action, q.GET_BY_CHANNEL_MESSAGE_ID, params)
            if existing is None:
                raise translate(exc, action, self.url) from exc
            return to_message(existing), False
        return to_message(row), True

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
        """See :meth:`ConversationStore.record_user_message`; on SQLite one unit of work (the
        message counter's UPDATE returns the conversation). A duplicate ``channel_message_id``
        rolls the unit back and takes the default path, which returns the stored message.
        PostgreSQL keeps the default: a read and a one-statement insert, no transaction."""
        units = self._opened()[0]
        recorded = None
        if self._one_unit(conversation_id):
            values, start = turns.new_user_message(
                text, bot=bot, channel=channel, external_id=external_id, metadata=metadata,
                channel_message_id=channel_message_id,
            )
            recorded = await turns.record_message(units, conversation_id, values, start)
        if recorded is None:
            return await super().record_user_message(
                conversation_id, text, bot=bot, channel=channel, external_id=external_id, metadata=metadata,
                channel_message_id=channel_message_id,
            )
        return recorded[0], recorded[1], True

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
        values = q.message_values(
            role=role,
            text=text,
            reply_to=reply_to,
            citations=[json_object(citation) for citation in citations],
            backend=backend,
            latency_ms=latency_ms,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            abstained=abstained,
            channel_message_id=channel_message_id,
        )
        return to_message(await self._insert_message(f"record an {role} message", conversation_id, values))

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
        """See :meth:`ConversationStore.add_turn_reply`. On SQLite the reply's insert and the
        release of this process's lease are one unit of work; PostgreSQL's advisory lock
        lives on its own connection and is released when the block exits."""
        units, locks = self._opened()
        if units.dialect == "postgresql":
            return await super().add_turn_reply(
                conversation_id, text, reply_to=reply_to, citations=citations, backend=backend,
                latency_ms=latency_ms, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                abstained=abstained,
            )
        values = q.message_values(
            role="assistant", text=text, reply_to=reply_to, citations=[json_object(c) for c in citations],
            backend=backend, latency_ms=latency_ms, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
            abstained=abstained,
        )
        row = await locks.run_releasing(conversation_id, "record an assistant message", q.insert_message, conversation_id, values)
        return to_message(row)

    async def _insert_message(
        self, action: str, conversation_id: str, values: dict[str, Any], *,
        passthrough: tuple[type[BaseException], ...] = (),
    ) -> Row[Any]:
        """Insert a message numbered by the conversation's counter.

        PostgreSQL: one statement (the counter's UPDATE in a CTE), so one round trip;
        elsewhere a unit of two statements. Either way the counter's row stays locked until
        the message is in, and a failed insert leaves the counter as it was.
        """
        units = self._opened()[0]
        if units.dialect != "postgresql":
            return await units.run(
                action, q.insert_message, conversation_id, values, write=True, passthrough=passthrough
            )
        params = {**values, "cid": conversation_id, "at": now()}
        rows = await units.execute(action, q.PG_INSERT_MESSAGE, params, write=True, passthrough=passthrough)
        if not rows:
            raise q.no_conversation(conversation_id)
        return rows[0]

    async def get_message(self, message_id: int) -> Message | None:
        row = await self._first("read a message", q.GET_MESSAGE, {"mid": message_id})
        return None if row is None else to_message(row)

    async def get_reply(self, message_id: int) -> Message | None:
        row = await self._first("read a stored reply", q.GET_REPLY, {"mid": message_id})
        return None if row is None else to_message(row)

    async def history(self, conversation_id: str, *, limit: int, before_seq: int | None = None) -> list[Message]:
        if limit <= 0:
            return []
        if before_seq is None:
            rows = await self._all("read the conversation history", q.HISTORY, {"cid": conversation_id, "n": limit})
        else:
            params = {"cid": conversation_id, "n": limit, "before": before_seq}
            rows = await self._all("read the conversation history", q.HISTORY_BEFORE, params)
        return [to_message(row) for row in reversed(rows)]

    async def count_messages(self, conversation_id: str) -> int:
        row = await self._first("count messages", q.COUNT_MESSAGES, {"cid": conversation_id})
        return int(row[0]) if row is not None else 0

    # -- feedback ------------------------------------------------------------------------

    async def add_feedback(
        self, conversation_id: str, rating: int, *, message_id: int | None = None, comment: str | None = None
    ) -> Feedback:
        if rating not in (1, -1):
            raise ValueError(f"rating must be 1 or -1, got {rating!r}")
        values: dict[str, Any] = {"conversation_id": conversation_id, "message_id": message_id, "rating": rating}
        values.update(comment=comment, created_at=now())
        return to_feedback(await self._run("record feedback", q.insert_feedback, values, write=True))

    async def list_feedback(
        self, *, conversation_id: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[Feedback]:
        query = select(q.feedback).order_by(F.created_at.desc(), F.id.desc()).limit(_positive(limit))
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
            await self._opened()[0].execute(
                "claim an event", q.CLAIM_EVENT, values, write=True, passthrough=(IntegrityError,)
            )
        except IntegrityError:
            return False
        return True

    async def claim_events(
        self, *, channel: str, events: Sequence[tuple[str, Mapping[str, Any] | None]]
    ) -> list[bool]:
        if not events:
            return []
        claims = [(event_id, None if payload is None else dict(payload)) for event_id, payload in events]
        return await self._run("claim events", q.claim_events, channel, claims, write=True)

    async def set_event_status(self, *, channel: str, event_id: str, status: str) -> None:
        params = {"event_channel": channel, "eid": event_id, "new_status": status}
        row = await self._first("update an event's status", q.SET_EVENT_STATUS, params, write=True)
        if row is None:
            raise StoreError(f"event {event_id!r} of channel {channel!r} was never claimed", hint="claim it first")

    async def pending_events(self, *, channel: str, older_than_s: float, limit: int = 100) -> list[PendingEvent]:
        return await self._run(
            "take over pending events", q.take_pending, channel, older_than_s, _positive(limit), write=True
        )

    # -- turn lock -----------------------------------------------------------------------

    @asynccontextmanager
    async def turn_lock(self, conversation_id: str, *, timeout: float) -> AsyncIterator[None]:
        async with self._opened()[1].hold(conversation_id, timeout):
            yield

    @asynccontextmanager
    async def turn(
        self, conversation_id: str, *, timeout: float, message: Message | None = None
    ) -> AsyncIterator[Conversation | None]:
        """See :meth:`ConversationStore.turn`; here the conversation (and, with ``message``,
        the earlier-message check) is read in the lock's own round trip (SQLite: the lease's
        transaction; PostgreSQL: the lock's connection)."""
        async with turns.hold_turn(self._opened()[1], conversation_id, timeout, message, 0, self._window) as found:
            conversation, _ = found
            yield conversation

    @asynccontextmanager
    async def turn_with_history(
        self, conversation_id: str, *, timeout: float, message: Message | None = None, history: int
    ) -> AsyncIterator[tuple[Conversation | None, list[Message]]]:
        """See :meth:`ConversationStore.turn_with_history`; the history window is read with
        the conversation, in the lock's own round trip."""
        async with turns.hold_turn(self._opened()[1], conversation_id, timeout, message, history, self._window) as found:
            yield found

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
        """See :meth:`ConversationStore.user_turn`. On SQLite, when the conversation's lock is
        free right then (in this process and in the database), recording the message (and
        starting the conversation), taking the lock and the turn's first read (conversation,
        earlier-message check, history) are one unit of work: the message is written first,
        in the same transaction. Otherwise, and for a resent message, the default's steps."""
        locks = self._opened()[1]
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        default = partial(
            super().user_turn, conversation_id, text, bot=bot, channel=channel, external_id=external_id,
            metadata=metadata, channel_message_id=channel_message_id, timeout=timeout, history=history,
        )
        if not self._one_unit(conversation_id):
            async with default() as turn:
                yield turn
            return
        values, start = turns.new_user_message(
            text, bot=bot, channel=channel, external_id=external_id, metadata=metadata,
            channel_message_id=channel_message_id,
        )
        async with turns.begin_turn(
            locks, conversation_id, values, start, timeout=timeout, history=history, read_window=self._window,
            default=default,
        ) as turn:
            yield turn

    def _one_unit(self, conversation_id: str) -> bool:
        """Whether a turn's start in ``conversation_id`` may be one unit of work: on SQLite,
        for an id of the store's own format (PostgreSQL keeps the default steps)."""
        return self._opened()[0].dialect != "postgresql" and _ID.fullmatch(conversation_id) is not None

    async def _window(self, conversation_id: str, limit: int) -> list[Message]:
        return await self.history(conversation_id, limit=limit)


def _positive(limit: int) -> int:
    if limit <= 0:
        raise ValueError(f"limit must be positive, got {limit}")
    return limit

