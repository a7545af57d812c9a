"""Fixtures shared by the whole test suite.

Conversation-store fixtures (``store_*`` / ``postgres_*``): every test that takes
``store``, ``store_url`` or ``fresh_store_url`` runs twice, on a SQLite file and on
PostgreSQL. PostgreSQL comes from ``BOTKIT_TEST_POSTGRES_URL`` (for example
``postgresql://postgres@127.0.0.1:5432/test``); each test session works in a database of
its own, ``botkit_test_<random>``, dropped at the end, so runs never collide. Without the
variable the PostgreSQL cases are skipped.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.helpers.postgres import scratch_database

if TYPE_CHECKING:
    from botkit.store import SQLConversationStore

POSTGRES_URL_ENV = "BOTKIT_TEST_POSTGRES_URL"
STORE_BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def _postgres_base_url() -> str:
    url = os.environ.get(POSTGRES_URL_ENV)
    if not url:
        pytest.skip(f"set {POSTGRES_URL_ENV}=postgresql://postgres@127.0.0.1:5432/test to run the PostgreSQL tests")
    return url


@contextmanager
def postgres_scratch_database() -> Iterator[str]:
    """A new, empty PostgreSQL database (its URL) that is dropped afterwards."""
    with scratch_database(_postgres_base_url()) as url:
        yield url


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
