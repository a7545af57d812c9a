"""Export and import conversations, messages and feedback as JSON lines.

For backups and for moving a bot between databases (SQLite → PostgreSQL and back):

    botkit export --out backup.jsonl [--since 7d]
    BOTKIT_DATABASE_URL=postgresql://... botkit import backup.jsonl

The file holds one JSON object per line, each with a ``type``:

``conversation``  ``id, bot, channel, external_id, state, metadata, created_at, updated_at``
``message``       ``conversation_id, seq, role, text, citations, backend, latency_ms,
                  prompt_tokens, completion_tokens, channel_message_id, reply_to_seq,
                  abstained, created_at``
``feedback``      ``conversation_id, message_seq, rating, comment, created_at``

Conversations come in id order, each followed by its messages (by ``seq``) and its
feedback. Database row ids are not exported: a message is named by its conversation and
``seq`` (``reply_to_seq``, ``message_seq``), so a file imports into any database.
Timestamps are ISO 8601 in UTC. The same data always exports to the same bytes.

Import is idempotent: a conversation already present is updated only when the file's
copy is newer (``updated_at``); a message already present at its ``seq`` is left alone;
a feedback row equal to one present is skipped. Importing a file twice, or an
overlapping backup, changes nothing the second time. Memory stays bounded: both
directions work a batch of conversations at a time.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, TextIO, cast

from sqlalchemy import Table, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from botkit.errors import ConfigError
from botkit.store.engine import WRITE, create_engine, translating
from botkit.store.models import ConversationRow, FeedbackRow, MessageRow
from botkit.store.rows import aware

BATCH = 200
_conversations = cast(Table, ConversationRow.__table__)
_messages = cast(Table, MessageRow.__table__)
_feedback = cast(Table, FeedbackRow.__table__)
C, M, F = _conversations.c, _messages.c, _feedback.c
_MESSAGE_FIELDS = ("role", "text", "citations", "backend", "latency_ms", "prompt_tokens", "completion_tokens",
                   "channel_message_id", "abstained")


@dataclass
class TransferReport:
    """What an export or an import did (``skipped``: already present; ``conflicts``: refused)."""

    conversations: int = 0
    messages: int = 0
    feedback: int = 0
    skipped: int = 0
    updated: int = 0
    conflicts: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``conflicts`` as a count and the first ten)."""
        return {"conversations": self.conversations, "messages": self.messages, "feedback": self.feedback,
                "skipped": self.skipped, "updated": self.updated, "conflicts": len(self.conflicts),
                "first_conflicts": self.conflicts[:10]}


def parse_since(value: str | None, *, now: datetime | None = None) -> datetime | None:
    """``7d``, ``12h``, ``30m`` (ago) or an ISO date/time (UTC when no zone is given)."""
    if not value:
        return None
    now = now or datetime.now(timezone.utc)
    units = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
    text = value.strip()
    if text[-1:] in units and text[:-1].replace(".", "", 1).isdigit():
        return now - timedelta(**{units[text[-1]]: float(text[:-1])})
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ConfigError(f"--since {value!r}: use a duration such as 7d, 12h, 30m or a date such as 2026-01-31") from exc
    return aware(parsed)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else aware(value).astimezone(timezone.utc).isoformat()


def _when(value: str | None) -> datetime | None:
    return None if value is None else aware(datetime.fromisoformat(value))


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, sort_keys=True, separators=(",", ":")) + "\n"


# -- export ----------------------------------------------------------------------------------


async def export_lines(engine: AsyncEngine, *, since: datetime | None = None, bot: str | None = None,
                       report: TransferReport | None = None) -> AsyncIterator[str]:
    """The export, one JSON line at a time (see the module docstring)."""
    report = report if report is not None else TransferReport()
    after = ""
    while True:
        query = select(_conversations).where(C.id > after).order_by(C.id).limit(BATCH)
        if since is not None:
            query = query.where(C.updated_at >= since)
        if bot is not None:
            query = query.where(C.bot == bot)
        async with translating("export conversations", engine.url), engine.connect() as connection:
            rows = (await connection.execute(query)).all()
            if not rows:
                return
            ids = [row.id for row in rows]
            messages = (await connection.execute(
                select(_messages).where(M.conversation_id.in_(ids)).order_by(M.conversation_id, M.seq))).all()
            feedback = (await connection.execute(
                select(_feedback).where(F.conversation_id.in_(ids)).order_by(F.conversation_id, F.created_at, F.id))).all()
        seq_of = {row.id: row.seq for row in messages}
        by_conversation: dict[str, list[Any]] = {}
        for row in messages:
            by_conversation.setdefault(row.conversation_id, []).append(row)
        feedback_of: dict[str, list[Any]] = {}
        for row in feedback:
            feedback_of.setdefault(row.conversation_id, []).append(row)
        for row in rows:
            report.conversations += 1
            yield _line({"type": "conversation", "id": row.id, "bot": row.bot, "channel": row.channel,
                         "external_id": row.external_id, "state": row.state, "metadata": dict(row._mapping["metadata"] or {}),
                         "created_at": _iso(row.created_at), "updated_at": _iso(row.updated_at)})
            for message in by_conversation.get(row.id, ()):
                report.messages += 1
                data = {name: getattr(message, name) for name in _MESSAGE_FIELDS}
                data.update(type="message", conversation_id=row.id, seq=message.seq, abstained=bool(message.abstained),
                            citations=list(message.citations or []), created_at=_iso(message.created_at),
                            reply_to_seq=seq_of.get(message.reply_to) if message.reply_to is not None else None)
                yield _line(data)
            for item in feedback_of.get(row.id, ()):
                report.feedback += 1
                yield _line({"type": "feedback", "conversation_id": row.id, "rating": item.rating,
                             "message_seq": seq_of.get(item.message_id) if item.message_id is not None else None,
                             "comment": item.comment, "created_at": _iso(item.created_at)})
        after = ids[-1]


async def export_to(out: TextIO, url: str, *, since: datetime | None = None, bot: str | None = None) -> TransferReport:
    """Write the export of the database at ``url`` to ``out``."""
    report = TransferReport()
    engine = await _open(url)
    try:
        async for line in export_lines(engine, since=since, bot=bot, report=report):
            out.write(line)
    finally:
        await engine.dispose()
    return report


# -- import ----------------------------------------------------------------------------------


def read_records(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """Parse export lines (blank lines ignored); a malformed line is a :class:`ConfigError` naming it."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"line {number}: not JSON: {exc.msg}") from exc
        if not isinstance(record, dict) or record.get("type") not in ("conversation", "message", "feedback"):
            raise ConfigError(f"line {number}: not a botkit export record (type conversation, message or feedback)")
        record["_line"] = number
        yield record


def _batches(records: Iterable[dict[str, Any]]) -> Iterator[list[list[dict[str, Any]]]]:
    """Groups of up to BATCH conversations, each a conversation record and the records after it."""
    batch: list[list[dict[str, Any]]] = []
    for record in records:
        if record["type"] == "conversation":
            if len(batch) >= BATCH:
                yield batch
                batch = []
            batch.append([record])
        elif not batch or batch[-1][0]["id"] != record.get("conversation_id"):
            raise ConfigError(f"line {record['_line']}: a {record['type']} must follow its conversation's record")
        else:
            batch[-1].append(record)
    if batch:
        yield batch


async def import_records(engine: AsyncEngine, records: Iterable[dict[str, Any]]) -> TransferReport:
    """Import parsed records (see :func:`read_records`) idempotently; see the module docstring."""
    report = TransferReport()
    for batch in _batches(records):
        async with translating("import conversations", engine.url), engine.connect() as connection:
            await connection.execution_options(**{WRITE: True})
            async with connection.begin():
                await _import_batch(connection, batch, report)
    return report


async def import_from(lines: Iterable[str], url: str) -> TransferReport:
    """Import export lines into the database at ``url`` (migrated first)."""
    engine = await _open(url)
    try:
        return await import_records(engine, read_records(lines))
    finally:
        await engine.dispose()


async def _import_batch(connection: AsyncConnection, batch: Sequence[list[dict[str, Any]]],
                        report: TransferReport) -> None:
    ids = [group[0]["id"] for group in batch]
    existing = {row.id: row for row in (await connection.execute(select(_conversations).where(C.id.in_(ids)))).all()}
    accepted: list[list[dict[str, Any]]] = []
    for group in batch:
        conversation = group[0]
        values = {"bot": conversation["bot"], "channel": conversation["channel"],
                  "external_id": conversation.get("external_id"), "state": conversation["state"],
                  "metadata": conversation.get("metadata") or {}, "updated_at": _when(conversation["updated_at"])}
        row = existing.get(conversation["id"])
        if row is None:
            await connection.execute(insert(_conversations).values(
                id=conversation["id"], created_at=_when(conversation["created_at"]), last_seq=0, **values))
            report.conversations += 1
        elif row.bot != conversation["bot"]:
            report.conflicts.append(f"conversation {conversation['id']}: belongs to bot {row.bot!r} here, "
                                    f"{conversation['bot']!r} in the file")
            continue
        elif values["updated_at"] is not None and values["updated_at"] > aware(row.updated_at):
            await connection.execute(update(_conversations).where(C.id == row.id).values(**values))
            report.updated += 1
        else:
            report.skipped += 1
        accepted.append(group)
    if accepted:
        await _import_messages(connection, accepted, report)


async def _seq_ids(connection: AsyncConnection, ids: Sequence[str]) -> dict[tuple[str, int], int]:
    rows = (await connection.execute(select(M.conversation_id, M.seq, M.id).where(M.conversation_id.in_(ids)))).all()
    return {(row.conversation_id, row.seq): row.id for row in rows}


async def _import_messages(connection: AsyncConnection, groups: Sequence[list[dict[str, Any]]],
                           report: TransferReport) -> None:
    ids = [group[0]["id"] for group in groups]
    present = await _seq_ids(connection, ids)
    taken = {(row.conversation_id, row.channel_message_id) for row in (await connection.execute(
        select(M.conversation_id, M.channel_message_id)
        .where(M.conversation_id.in_(ids), M.channel_message_id.is_not(None)))).all()}
    new_rows: list[dict[str, Any]] = []
    replies: list[tuple[str, int, int]] = []
    top: dict[str, int] = {}
    for group in groups:
        cid = group[0]["id"]
        for record in group[1:]:
            if record["type"] != "message":
                continue
            seq = int(record["seq"])
            top[cid] = max(top.get(cid, 0), seq)
            if (cid, seq) in present:
                report.skipped += 1
                continue
            cmid = record.get("channel_message_id")
            if cmid is not None and (cid, cmid) in taken:
                report.conflicts.append(f"message {cid}#{seq}: channel_message_id {cmid!r} is already used here")
                continue
            taken.add((cid, cmid))
            row = {name: record.get(name) for name in _MESSAGE_FIELDS}
            row.update(conversation_id=cid, seq=seq, reply_to=None, citations=record.get("citations") or [],
                       abstained=bool(record.get("abstained")), created_at=_when(record["created_at"]))
            new_rows.append(row)
            if record.get("reply_to_seq") is not None:
                replies.append((cid, seq, int(record["reply_to_seq"])))
    if new_rows:
        await connection.execute(insert(_messages), new_rows)
        report.messages += len(new_rows)
        present = await _seq_ids(connection, ids)
        links = [{"mid": present[(cid, seq)], "target": present.get((cid, to))} for cid, seq, to in replies]
        links = [link for link in links if link["target"] is not None]
        for link in links:
            await connection.execute(update(_messages).where(M.id == link["mid"]).values(reply_to=link["target"]))
    for cid, seq in top.items():  # the counter that numbers new messages must stay ahead
        await connection.execute(update(_conversations).where(C.id == cid, C.last_seq < seq).values(last_seq=seq))
    await _import_feedback(connection, groups, present, report)


async def _import_feedback(connection: AsyncConnection, groups: Sequence[list[dict[str, Any]]],
                           present: dict[tuple[str, int], int], report: TransferReport) -> None:
    ids = [group[0]["id"] for group in groups]
    rows = (await connection.execute(select(_feedback).where(F.conversation_id.in_(ids)))).all()
    have = {(r.conversation_id, r.message_id, r.rating, r.comment, aware(r.created_at)) for r in rows}
    new_rows = []
    for group in groups:
        cid = group[0]["id"]
        for record in group[1:]:
            if record["type"] != "feedback":
                continue
            seq = record.get("message_seq")
            message_id = present.get((cid, int(seq))) if seq is not None else None
            if seq is not None and message_id is None:
                report.conflicts.append(f"feedback line {record['_line']}: message {cid}#{seq} is not in the file")
                continue
            key = (cid, message_id, int(record["rating"]), record.get("comment"), _when(record["created_at"]))
            if key in have:
                report.skipped += 1
                continue
            have.add(key)
            new_rows.append({"conversation_id": cid, "message_id": message_id, "rating": key[2],
                             "comment": key[3], "created_at": key[4]})
    if new_rows:
        await connection.execute(insert(_feedback), new_rows)
        report.feedback += len(new_rows)


async def _open(url: str) -> AsyncEngine:
    from botkit.store.migrate import ensure_schema

    engine = create_engine(url)
    try:
        await ensure_schema(engine)
    except BaseException:
        await engine.dispose()
        raise
    return engine


__all__ = ["TransferReport", "export_lines", "export_to", "import_from", "import_records", "parse_since",
           "read_records"]

