"""Database URLs and failures: configuration errors and outages become botkit errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from botkit.config import load_config
from botkit.errors import ConfigError, StoreError, StoreUnavailable
from botkit.store import SQLConversationStore, normalize_database_url
from botkit.store.engine import is_unavailable


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite:///data/botkit.db", "sqlite+aiosqlite:///data/botkit.db"),
        ("sqlite:////abs/botkit.db", "sqlite+aiosqlite:////abs/botkit.db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("postgresql://bot@db:5432/botkit", "postgresql+asyncpg://bot@db:5432/botkit"),
        ("postgres://bot:secret@db/botkit", "postgresql+asyncpg://bot:secret@db/botkit"),
        ("postgresql+asyncpg://bot@db/botkit", "postgresql+asyncpg://bot@db/botkit"),
        ("postgresql://bot@db/botkit?sslmode=require", "postgresql+asyncpg://bot@db/botkit?ssl=require"),
    ],
)
def test_urls_are_normalised_to_the_async_drivers(given: str, expected: str) -> None:
    assert normalize_database_url(given).render_as_string(hide_password=False) == expected


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("mysql://root@localhost/botkit", "supported schemes: sqlite://, postgresql://"),
        ("mongodb://localhost/botkit", "supported schemes"),
        ("postgresql+psycopg2://bot@db/botkit", "asyncpg"),
        ("sqlite://", "in-memory"),
        ("sqlite:///:memory:", "in-memory"),
        ("not a url", "cannot parse"),
    ],
)
def test_unsupported_urls_are_config_errors(url: str, says: str) -> None:
    with pytest.raises(ConfigError, match="database_url") as caught:
        SQLConversationStore(url)
    assert says in str(caught.value)


def test_password_is_not_shown_in_errors() -> None:
    with pytest.raises(ConfigError) as caught:
        SQLConversationStore("mysql://root:hunter2@localhost/botkit")
    assert "hunter2" not in str(caught.value)


def test_store_from_config_defaults_to_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    store = SQLConversationStore.from_config(load_config(tmp_path, environ={}))
    assert store.url is not None
    assert store.url.render_as_string() == f"sqlite+aiosqlite:///{tmp_path / 'data' / 'botkit.db'}"
    assert not (tmp_path / "data").exists()  # the constructor does no I/O


async def test_unreachable_postgres_is_store_unavailable() -> None:
    store = SQLConversationStore("postgresql://postgres:secret@127.0.0.1:1/botkit")
    with pytest.raises(StoreUnavailable) as caught:
        await store.open()
    message = str(caught.value)
    assert "cannot reach the conversation database" in message and "127.0.0.1:1" in message
    assert "secret" not in message
    assert isinstance(caught.value.__cause__, OSError)


@pytest.mark.postgres
async def test_missing_postgres_database_is_a_store_error(postgres_url: str) -> None:
    from sqlalchemy.engine import make_url

    missing = make_url(postgres_url).set(database="botkit_no_such_db").render_as_string(hide_password=False)
    with pytest.raises(StoreError, match="botkit_no_such_db"):
        await SQLConversationStore(missing).open()


async def test_unopenable_sqlite_file_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError):
        # The data folder cannot be created below a file.
        await SQLConversationStore(f"sqlite:///{blocker}/sub/botkit.db").open()


async def test_bugs_are_store_errors_not_outages(store: SQLConversationStore) -> None:
    from sqlalchemy import text

    with pytest.raises(StoreError) as caught:
        async with store._unit("probe the store") as session:  # noqa: SLF001 - a raw session on purpose
            await session.execute(text("SELECT * FROM no_such_table"))
    assert type(caught.value) is StoreError
    assert "probe the store failed" in str(caught.value) and "no_such_table" in str(caught.value)
    assert not is_unavailable(caught.value.__cause__)  # type: ignore[arg-type]


@pytest.mark.postgres
async def test_store_recovers_after_postgres_drops_its_connections(postgres_url: str) -> None:
    import asyncpg
    from sqlalchemy.engine import make_url

    async with SQLConversationStore(postgres_url) as store:
        conversation = await store.create_conversation(bot="b", channel="web")
        async with store.turn_lock(conversation.id, timeout=5):  # warm the locks' pool too
            pass
        # What a server restart does to the pool: every connection is cut.
        admin = await asyncpg.connect(make_url(postgres_url).render_as_string(hide_password=False))
        try:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        finally:
            await admin.close()
        assert await store.get_conversation(conversation.id) == conversation  # pool_pre_ping reconnects
        async with store.turn_lock(conversation.id, timeout=5):
            await store.add_user_message(conversation.id, "still here")
        assert await store.count_messages(conversation.id) == 1
