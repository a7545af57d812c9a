"""Fixtures shared by the whole test suite.

Conversation-store fixtures (``store_*`` / ``postgres_*``): every test that takes
``store``, ``store_url`` or ``fresh_store_url`` runs twice, on a SQLite file and on
PostgreSQL. PostgreSQL comes from ``BOTKIT_TEST_POSTGRES_URL`` (for example
``postgresql://postgres@127.0.0.1:5432/test``); each test session works in a database of
its own, ``botkit_test_<random>``, dropped at the end, so runs never collide. Without the
variable the PostgreSQL cases are skipped.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from botkit.store import SQLConversationStore

POSTGRES_URL_ENV = "BOTKIT_TEST_POSTGRES_URL"
STORE_BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def _postgres_base_url() -> str:
    url = os.environ.get(POSTGRES_URL_ENV)
    if not url:
        pytest.skip(f"set {POSTGRES_URL_ENV}=postgresql://postgres@127.0.0.1:5432/test to run the PostgreSQL tests")
    return url


def _postgres_database_url(base_url: str, database: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(base_url).set(database=database).render_as_string(hide_password=False)


async def _postgres_admin(base_url: str, statement: str) -> None:
    import asyncpg
    from sqlalchemy.engine import make_url

    dsn = make_url(base_url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn, timeout=10)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@contextmanager
def postgres_scratch_database() -> Iterator[str]:
    """A new, empty PostgreSQL database (its URL) that is dropped afterwards."""
    base = _postgres_base_url()
    name = f"botkit_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_postgres_admin(base, f'CREATE DATABASE "{name}"'))
    try:
        yield _postgres_database_url(base, name)
    finally:
        asyncio.run(_postgres_admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The session's own PostgreSQL database (skips without BOTKIT_TEST_POSTGRES_URL)."""
    with postgres_scratch_database() as url:
        yield url


@pytest.fixture(params=STORE_BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL: a new SQLite file, or the session's PostgreSQL database (shared by tests)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'botkit.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture(params=STORE_BACKENDS)
def fresh_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database: a new SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    with postgres_scratch_database() as url:
        yield url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[SQLConversationStore]:
    """An open :class:`SQLConversationStore` (SQLite lease of 1 s, so lock tests stay fast)."""
    from botkit.store import SQLConversationStore

    opened = SQLConversationStore(store_url, lock_lease_s=1.0)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()
