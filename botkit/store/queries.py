"""The store's SQL: statements built once, and the units of work that run them.

Building a statement and computing its cache key costs several times what SQLite takes to
run it, so every statement on a hot path is built here once, with bound parameters, and
executed with a parameter dict (SQLAlchemy's compiled cache does the rest). A unit of work
is a plain function of a :class:`Connection` that runs in one transaction (see
:mod:`botkit.store.units`).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

from sqlalchemy import Column, Row, Table, bindparam, exists, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from botkit.errors import StoreError
from botkit.store.base import PendingEvent
from botkit.store.models import ConversationRow, FeedbackRow, MessageRow, ProcessedEventRow
from botkit.store.rows import aware, now

conversations = cast(Table, ConversationRow.__table__)
messages = cast(Table, MessageRow.__table__)
feedback = cast(Table, FeedbackRow.__table__)
events = cast(Table, ProcessedEventRow.__table__)
C, M, F, E = conversations.c, messages.c, feedback.c, events.c


def param(column: Column[Any], name: str) -> Any:
    """A bound parameter typed like ``column`` (JSON and timestamps need the column's type)."""
    return bindparam(name, type_=column.type)


CREATE_CONVERSATION = insert(conversations).returning(*conversations.c)
GET_CONVERSATION = select(conversations).where(C.id == bindparam("cid"))
FIND_CONVERSATION = (
    select(conversations)
    .where(C.bot == bindparam("bot"), C.channel == bindparam("channel"), C.external_id == bindparam("external_id"))
    .where(C.state != "closed")
    .order_by(C.created_at.desc())
    .limit(1)
)
SET_STATE = (
    update(conversations)
    .where(C.id == bindparam("cid"))
    .values(state=param(C.state, "new_state"), updated_at=param(C.updated_at, "at"))
    .returning(*conversations.c)
)
LOCK_METADATA = select(C["metadata"]).where(C.id == bindparam("cid")).with_for_update()
SET_METADATA = (
    update(conversations)
    .where(C.id == bindparam("cid"))
    .values({"metadata": param(C["metadata"], "merged"), "updated_at": param(C.updated_at, "at")})
    .returning(*conversations.c)
)
NEXT_SEQ = (
    update(conversations)
    .where(C.id == bindparam("cid"))
    .values(last_seq=C.last_seq + 1, updated_at=param(C.updated_at, "at"))
    .returning(C.last_seq)
)
NEXT_SEQ_CONVERSATION = NEXT_SEQ.returning(*conversations.c)  # the counter and the whole row
INSERT_MESSAGE = insert(messages).returning(*messages.c)
NEXT_SEQ_CTE = NEXT_SEQ.cte("next_seq")
PG_INSERT_MESSAGE = (
    insert(messages)
    .from_select(
        [column for column in messages.c if column.name != "id"],
        select(
            *(
                NEXT_SEQ_CTE.c.last_seq if column.name == "seq"
                else param(column, {"conversation_id": "cid", "created_at": "at"}.get(column.name, column.name))
                for column in messages.c
                if column.name != "id"
            )
        ).select_from(NEXT_SEQ_CTE),
    )
    .returning(*messages.c)
)
GET_MESSAGE = select(messages).where(M.id == bindparam("mid"))
GET_REPLY = select(messages).where(M.reply_to == bindparam("mid")).order_by(M.seq).limit(1)
GET_BY_CHANNEL_MESSAGE_ID = select(messages).where(
    M.conversation_id == bindparam("cid"), M.channel_message_id == bindparam("channel_message_id")
)
HISTORY = (
    select(messages).where(M.conversation_id == bindparam("cid")).order_by(M.seq.desc()).limit(bindparam("n"))
)
HISTORY_BEFORE = HISTORY.where(M.seq < bindparam("before"))
COUNT_MESSAGES = select(func.count()).select_from(messages).where(M.conversation_id == bindparam("cid"))
MESSAGE_OWNER = select(M.conversation_id).where(M.id == bindparam("mid"))
CONVERSATION_EXISTS = select(C.id).where(C.id == bindparam("cid"))
INSERT_FEEDBACK = insert(feedback).returning(*feedback.c)
CLAIM_EVENT = insert(events)
CLAIM_EVENT_OR_SKIP = {  # by dialect: insert, or do nothing when the event was claimed before
    "postgresql": pg_insert(events).on_conflict_do_nothing(index_elements=[E.channel, E.event_id]),
    "sqlite": sqlite_insert(events).on_conflict_do_nothing(index_elements=[E.channel, E.event_id]),
}
SET_EVENT_STATUS = (
    update(events)
    .where(E.channel == bindparam("event_channel"), E.event_id == bindparam("eid"))
    .values(status=param(E.status, "new_status"))
    .returning(E.event_id)
)

MESSAGE_DEFAULTS: dict[str, Any] = {
    "channel_message_id": None, "reply_to": None, "citations": [], "backend": None, "latency_ms": None,
    "prompt_tokens": None, "completion_tokens": None, "abstained": False,
}


def message_values(**values: Any) -> dict[str, Any]:
    """Every column of a new message (one set of keys: one compiled INSERT)."""
    return {**MESSAGE_DEFAULTS, **values}


_earlier, _answer, _between = messages.alias("earlier"), messages.alias("answer"), messages.alias("between")
EARLIER_UNANSWERED = (
    # A user message recorded before :seq, since :since, with no reply and no bot or agent
    # message between it and :seq: its turn is still to come (see ConversationStore.turn).
    select(_earlier.c.id)
    .where(
        _earlier.c.conversation_id == bindparam("cid"),
        _earlier.c.role == "user",
        _earlier.c.seq < bindparam("seq"),
        _earlier.c.created_at >= param(M.created_at, "since"),
    )
    .where(~exists().where(_answer.c.reply_to == _earlier.c.id))
    .where(
        ~exists().where(
            _between.c.conversation_id == _earlier.c.conversation_id,
            _between.c.role != "user",
            _between.c.seq > _earlier.c.seq,
            _between.c.seq < bindparam("seq"),
        )
    )
    .limit(1)
)


# -- units of work --------------------------------------------------------------------------


def claim_events(
    connection: Connection, channel: str, claims: list[tuple[str, dict[str, Any] | None]]
) -> list[bool]:
    """Claim several events in one transaction: for each, ``True`` when this call claimed
    it, ``False`` when it was claimed before (also earlier in the same list)."""
    statement = CLAIM_EVENT_OR_SKIP.get(connection.dialect.name)
    if statement is None:
        raise StoreError(f"claiming events in a batch is not supported on {connection.dialect.name}")
    at = now()
    return [
        connection.execute(statement, {"channel": channel, "event_id": event_id, "status": "pending",
                                       "created_at": at, "claimed_at": at, "payload": payload}).rowcount == 1
        for event_id, payload in claims
    ]


def read_turn(
    connection: Connection, *, conversation_id: str, seq: int | None, window_s: float, history: int = 0,
    row: Row[Any] | None = None,
) -> tuple[Row[Any] | None, bool, list[Row[Any]]]:
    """A turn lock's read for the turn answering message ``seq``: the conversation's row,
    whether an earlier message recorded in the last ``window_s`` seconds still waits for its
    turn (then this turn lets it go first), and, when it does not, the conversation's last
    ``history`` messages (newest first; none while a human holds the conversation).
    ``seq=None``: no earlier-message check. ``row``: the conversation's row as this
    transaction already read it (not read again)."""
    if row is None:
        row = connection.execute(GET_CONVERSATION, {"cid": conversation_id}).first()
    if row is None or row.state == "handoff":
        return row, False, []
    if seq is not None:
        params = {"cid": conversation_id, "seq": seq, "since": now() - timedelta(seconds=window_s)}
        if connection.execute(EARLIER_UNANSWERED, params).first() is not None:
            return row, True, []
    if history <= 0:
        return row, False, []
    return row, False, list(connection.execute(HISTORY, {"cid": conversation_id, "n": history}).all())


def read_turn_after_record(
    connection: Connection, recorded: tuple[Row[Any], Row[Any]], *, window_s: float, history: int
) -> tuple[Row[Any] | None, bool, list[Row[Any]]]:
    """:func:`read_turn` for the message :func:`record_user_message` just recorded (its
    conversation row, returned by the counter's UPDATE in this transaction, is not read again)."""
    conversation, message = recorded
    return read_turn(
        connection, conversation_id=conversation.id, seq=message.seq, window_s=window_s, history=history, row=conversation
    )


def insert_message(connection: Connection, conversation_id: str, values: dict[str, Any]) -> Row[Any]:
    """Insert a message numbered by the conversation's counter (its row stays locked until commit)."""
    at = now()
    seq = connection.execute(NEXT_SEQ, {"cid": conversation_id, "at": at}).scalar()
    if seq is None:
        raise no_conversation(conversation_id)
    params = {**values, "conversation_id": conversation_id, "seq": seq, "created_at": at}
    return connection.execute(INSERT_MESSAGE, params).one()


def record_user_message(
    connection: Connection, conversation_id: str, values: dict[str, Any], start: dict[str, Any]
) -> tuple[Row[Any], Row[Any]]:
    """Insert a user message numbered by the conversation's counter, first inserting the
    conversation (``start``: its columns but id and timestamps) when it does not exist;
    return the conversation's and the message's rows. The counter's UPDATE returns the
    conversation's row, so an existing conversation costs no extra read."""
    at = now()
    conversation = connection.execute(NEXT_SEQ_CONVERSATION, {"cid": conversation_id, "at": at}).first()
    if conversation is None:
        created = {**start, "id": conversation_id, "last_seq": 0, "created_at": at, "updated_at": at}
        connection.execute(CREATE_CONVERSATION, created).one()
        conversation = connection.execute(NEXT_SEQ_CONVERSATION, {"cid": conversation_id, "at": at}).one()
    params = {**values, "conversation_id": conversation_id, "seq": conversation.last_seq, "created_at": at}
    return conversation, connection.execute(INSERT_MESSAGE, params).one()


def merge_metadata(connection: Connection, conversation_id: str, patch: dict[str, Any]) -> Row[Any]:
    """Merge ``patch`` into the metadata (``None`` removes a key) under the row's lock."""
    current = connection.execute(LOCK_METADATA, {"cid": conversation_id}).scalar()
    if current is None:
        raise no_conversation(conversation_id)
    merged = {key: value for key, value in {**current, **patch}.items() if value is not None}
    return connection.execute(SET_METADATA, {"cid": conversation_id, "merged": merged, "at": now()}).one()


def insert_feedback(connection: Connection, values: dict[str, Any]) -> Row[Any]:
    """Insert a rating after checking its message belongs to its conversation."""
    conversation_id, message_id = values["conversation_id"], values["message_id"]
    if message_id is not None:
        owner = connection.execute(MESSAGE_OWNER, {"mid": message_id}).scalar()
        if owner != conversation_id:
            raise StoreError(f"message {message_id} is not part of conversation {conversation_id!r}")
    elif connection.execute(CONVERSATION_EXISTS, {"cid": conversation_id}).scalar() is None:
        raise no_conversation(conversation_id)
    return connection.execute(INSERT_FEEDBACK, values).one()


def take_pending(connection: Connection, channel: str, older_than_s: float, limit: int) -> list[PendingEvent]:
    """Claim events left pending ``older_than_s`` seconds (see ``pending_events``)."""
    at = now()
    query = (
        select(E.event_id, E.payload, E.created_at)
        .where(E.channel == channel, E.status == "pending", E.claimed_at < at - timedelta(seconds=older_than_s))
        .order_by(E.claimed_at)
        .limit(limit)
        .with_for_update(skip_locked=True)  # PostgreSQL; SQLite serialises writers instead
    )
    rows = connection.execute(query).all()
    if rows:
        taken = update(events).where(E.channel == channel, E.event_id.in_([row.event_id for row in rows]))
        connection.execute(taken.values(claimed_at=at))
    return [PendingEvent(channel, row.event_id, row.payload, aware(row.created_at)) for row in rows]


def no_conversation(conversation_id: str) -> StoreError:
    """The error for a conversation id that is not in the store."""
    return StoreError(f"conversation {conversation_id!r} does not exist")
