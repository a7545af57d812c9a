"""Scratch PostgreSQL databases for tests and benchmarks (asyncpg, no SQLAlchemy engine)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from typing import Any


def dsn(url: str, database: str | None = None) -> str:
    """``url`` as a plain ``postgresql://`` DSN (any SQLAlchemy driver suffix dropped),
    optionally pointing at another ``database`` of the same server."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


async def pg_execute(url: str, statement: str, *args: Any, database: str | None = None) -> Any:
    """Run one statement on ``url`` (or another database of its server); return its rows."""
    import asyncpg

    connection = await asyncpg.connect(dsn(url, database), timeout=10)
    try:
        return await connection.fetch(statement, *args)
    finally:
        await connection.close()


@contextlib.contextmanager
def scratch_database(base_url: str, prefix: str = "botkit_test") -> Iterator[str]:
    """A new, empty database on ``base_url``'s server (its URL, same user), dropped afterwards
    even when connections to it are still open."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    asyncio.run(pg_execute(base_url, f'CREATE DATABASE "{name}"'))
    try:
        yield dsn(base_url, name)
    finally:
        asyncio.run(pg_execute(base_url, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        asyncio.run(pg_execute(base_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
