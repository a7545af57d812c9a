"""``botkit export`` / ``botkit import``: JSON lines, SQLite → PostgreSQL → SQLite, idempotent."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from botkit.store import SQLConversationStore
from botkit.transfer import export_to, import_from, parse_since


async def _populate(url: str, bot: str) -> None:
    store = SQLConversationStore(url)
    await store.open()
    try:
        for n in range(5):
            conversation = await store.create_conversation(
                bot=bot, channel="web" if n % 2 else "slack", external_id=f"U{n}" if n % 2 == 0 else None,
                metadata={"n": n, "nested": {"ünïcode": "✓", "float": 1732612345.123456}})
            for turn in range(3):
                user, _ = await store.add_user_message(conversation.id, f"question {n}.{turn} <b>&amp;</b>",
                                                       channel_message_id=f"c-{n}-{turn}")
                reply = await store.add_bot_message(
                    conversation.id, f"answer {n}.{turn} [1]", reply_to=user.id,
                    citations=[{"number": 1, "source": "a.md", "title": "A", "snippet": "…"}],
                    backend="extractive", latency_ms=12, prompt_tokens=100, completion_tokens=20, abstained=turn == 2)
                if turn == 1:
                    await store.add_feedback(conversation.id, 1 if n % 2 else -1, message_id=reply.id, comment="ok")
            await store.add_feedback(conversation.id, -1)
            if n == 3:
                await store.set_state(conversation.id, "handoff")
                await store.add_bot_message(conversation.id, "a person here", reply_to=None, role="agent")
    finally:
        await store.close()


async def _export(url: str, bot: str, **kwargs: object) -> str:
    out = io.StringIO()
    await export_to(out, url, bot=bot, **kwargs)  # type: ignore[arg-type]
    return out.getvalue()


@pytest.mark.postgres
async def test_sqlite_to_postgres_and_back_is_identical(tmp_path: Path, postgres_url: str) -> None:
    bot = f"transfer-{uuid.uuid4().hex[:8]}"
    sqlite_url = f"sqlite:///{tmp_path / 'source.db'}"
    await _populate(sqlite_url, bot)
    first = await _export(sqlite_url, bot)
    lines = [json.loads(line) for line in first.splitlines()]
    kinds = [line["type"] for line in lines]
    assert kinds.count("conversation") == 5 and kinds.count("message") == 5 * 6 + 1 and kinds.count("feedback") == 10
    assert all("id" not in line for line in lines if line["type"] == "message")  # row ids never exported

    report = await import_from(first.splitlines(keepends=True), postgres_url)
    assert (report.conversations, report.messages, report.feedback, report.conflicts) == (5, 31, 10, [])
    assert await _export(postgres_url, bot) == first

    again = await import_from(first.splitlines(keepends=True), postgres_url)  # idempotent
    assert (again.conversations, again.messages, again.feedback, again.updated) == (0, 0, 0, 0)
    assert again.skipped == 5 + 31 + 10
    assert await _export(postgres_url, bot) == first

    back_url = f"sqlite:///{tmp_path / 'back.db'}"
    await import_from((await _export(postgres_url, bot)).splitlines(keepends=True), back_url)
    assert await _export(back_url, bot) == first

    store = SQLConversationStore(postgres_url)  # the imported data works: new turns continue the numbering
    await store.open()
    try:
        conversation_id = lines[0]["id"]
        cmid = lines[1]["channel_message_id"]
        message, created = await store.add_user_message(conversation_id, "one more", channel_message_id=cmid)
        assert not created  # the imported channel message id still deduplicates
        message, created = await store.add_user_message(conversation_id, "one more")
        top = max(line["seq"] for line in lines if line.get("conversation_id") == conversation_id and "seq" in line)
        assert created and message.seq == top + 1
        history = await store.history(conversation_id, limit=10)
        replies = {m.seq: m for m in history}
        assert replies[2].reply_to == replies[1].id  # reply_to remapped to the new row ids
    finally:
        await store.close()


async def test_since_and_newer_copies(tmp_path: Path) -> None:
    from datetime import datetime, timedelta, timezone

    url = f"sqlite:///{tmp_path / 'a.db'}"
    await _populate(url, "b")
    assert await _export(url, "b", since=datetime.now(timezone.utc) + timedelta(hours=1)) == ""
    assert (await _export(url, "b", since=parse_since("1h"))).count('"type":"conversation"') == 5
    assert parse_since("2026-01-31") == datetime(2026, 1, 31, tzinfo=timezone.utc)

    target = f"sqlite:///{tmp_path / 'b.db'}"
    await import_from((await _export(url, "b")).splitlines(), target)
    store = SQLConversationStore(url)
    await store.open()
    try:
        changed = (await store.list_conversations(bot="b"))[0]
        await store.set_state(changed.id, "closed")
    finally:
        await store.close()
    report = await import_from((await _export(url, "b")).splitlines(), target)
    assert report.updated == 1 and report.messages == 0
    assert await _export(target, "b") == await _export(url, "b")


def test_cli_export_import(tmp_path: Path) -> None:
    import asyncio

    from botkit.cli import app

    bot_dir = tmp_path / "bot"
    bot_dir.mkdir()
    (bot_dir / "bot.yaml").write_text("name: clibot\n", encoding="utf-8")
    asyncio.run(_populate(f"sqlite:///{bot_dir / 'data' / 'botkit.db'}", "clibot"))
    out = tmp_path / "backup.jsonl"
    runner = CliRunner()
    result = runner.invoke(app, ["export", "--bot", str(bot_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "exported 5 conversations, 31 messages, 10 feedback" in " ".join(result.output.split())
    target = f"sqlite:///{tmp_path / 'copy.db'}"
    result = runner.invoke(app, ["import", str(out), "--bot", str(bot_dir), "--database-url", target, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["messages"] == 31
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"type": "message", "conversation_id": "x"}\n', encoding="utf-8")
    result = runner.invoke(app, ["import", str(bad), "--bot", str(bot_dir), "--database-url", target])
    assert result.exit_code == 2 and "must follow its conversation" in " ".join(result.output.split())
