"""Schema migrations: applied on first open, idempotent, by `botkit db upgrade`, matching the models."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import typer
from sqlalchemy import inspect, text
from typer.testing import CliRunner

from botkit.commands import db as db_commands
from botkit.errors import StoreError
from botkit.store import SQLConversationStore, create_engine
from botkit.store.migrate import current_revision, ensure_schema, head_revision
from botkit.store.models import VERSION_TABLE, Base

STORE_TABLES = {"conversations", "messages", "feedback", "processed_events", "turn_locks"}


async def test_first_open_applies_migrations_once(fresh_store_url: str) -> None:
    engine = create_engine(fresh_store_url)
    try:
        assert await current_revision(engine) is None
        async with SQLConversationStore(engine) as store:
            await store.create_conversation(bot="b", channel="web")
        assert await current_revision(engine) == head_revision()
        async with engine.connect() as connection:
            tables = set(await connection.run_sync(lambda sync: inspect(sync).get_table_names()))
        assert STORE_TABLES | {VERSION_TABLE} <= tables
        assert await ensure_schema(engine) is False  # already at head: nothing to do
        async with SQLConversationStore(engine) as store:  # reopening keeps the data
            assert len(await store.list_conversations(bot="b")) == 1

        # A database migrated by a newer botkit is refused, not silently "downgraded".
        async with engine.begin() as connection:
            await connection.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))
        with pytest.raises(StoreError, match="newer botkit"):
            await SQLConversationStore(engine).open()
    finally:
        await engine.dispose()


async def test_concurrent_first_opens_migrate_once(fresh_store_url: str) -> None:
    stores = [SQLConversationStore(fresh_store_url) for _ in range(4)]
    try:
        await asyncio.gather(*(store.open() for store in stores))
        conversation = await stores[0].create_conversation(bot="b", channel="web")
        assert await stores[3].get_conversation(conversation.id) == conversation
    finally:
        await asyncio.gather(*(store.close() for store in stores))


async def test_models_match_the_migrations(store_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    engine = create_engine(store_url)
    try:
        await ensure_schema(engine)

        def diff(connection: object) -> list[object]:
            context = MigrationContext.configure(
                connection,  # type: ignore[arg-type]
                opts={
                    "compare_type": True,
                    "include_object": lambda obj, name, kind, reflected, compare_to: (
                        not (kind == "table" and reflected and compare_to is None)
                    ),
                },
            )
            return list(compare_metadata(context, Base.metadata))

        async with engine.connect() as connection:
            assert await connection.run_sync(diff) == []
    finally:
        await engine.dispose()


def _runner() -> CliRunner:
    # BOTKIT_TEST_POSTGRES_URL looks like a config override (key test_postgres_url) to
    # load_config, which would reject it as an unknown key: hide it from the CLI.
    return CliRunner(env={"BOTKIT_TEST_POSTGRES_URL": None})


def _cli() -> typer.Typer:
    app = typer.Typer()
    db_commands.register(app)

    @app.callback()
    def _root() -> None:
        """A root so that `db` stays a sub-command."""

    return app


def test_botkit_db_upgrade_and_current(fresh_store_url: str, tmp_path: Path) -> None:
    bot = tmp_path / "bot"
    bot.mkdir()
    (bot / "bot.yaml").write_text(f"name: demo\ndatabase_url: {fresh_store_url}\n", encoding="utf-8")
    runner = _runner()

    pending = runner.invoke(_cli(), ["db", "current", "--bot", str(bot)])
    assert pending.exit_code == 1 and "no botkit schema yet" in pending.output
    first = runner.invoke(_cli(), ["db", "upgrade", "--bot", str(bot)])
    assert first.exit_code == 0, first.output
    assert f"upgraded from an empty database to {head_revision()}" in " ".join(first.output.split())
    second = runner.invoke(_cli(), ["db", "upgrade", "--bot", str(bot)])
    assert second.exit_code == 0 and "already at revision" in second.output
    current = runner.invoke(_cli(), ["db", "current", "--bot", str(bot)])
    assert current.exit_code == 0 and f"revision {head_revision()} (head)" in " ".join(current.output.split())


def test_botkit_db_upgrade_reports_a_bad_url(tmp_path: Path) -> None:
    (tmp_path / "bot.yaml").write_text("database_url: mysql://root@localhost/botkit\n", encoding="utf-8")
    result = _runner().invoke(_cli(), ["db", "upgrade", "--bot", str(tmp_path)])
    assert result.exit_code == 2
    assert "database_url" in result.output and "Traceback" not in result.output


def test_default_database_is_a_sqlite_file_in_the_data_dir(tmp_path: Path) -> None:
    (tmp_path / "bot.yaml").write_text("name: demo\n", encoding="utf-8")
    result = _runner().invoke(_cli(), ["db", "upgrade", "--bot", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "data" / "botkit.db").is_file()
