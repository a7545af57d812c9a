"""Async engines configured for botkit, and translation of database errors.

SQLite gets WAL mode, a busy timeout and foreign keys on every connection, and the usual
aiosqlite recipe for real transactions: pysqlite's own ``BEGIN`` handling is switched off
and botkit emits ``BEGIN`` itself, ``BEGIN IMMEDIATE`` for units of work that write (they
run on a connection with the :data:`WRITE` execution option), so a read-then-write never
fails half-way with "database is locked". PostgreSQL connections are pinged before use,
so the pool recovers after a server restart; SQLite connections are not (a file does not
drop its connections, and through aiosqlite the ping would cost several thread hops).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from typing_extensions import Self

from botkit.errors import BotkitError, StoreError, StoreUnavailable
from botkit.store.urls import display_url, is_sqlite, normalize_database_url

WRITE = "botkit_write"
"""Execution option marking a connection whose transaction writes (SQLite: BEGIN IMMEDIATE)."""

SQLITE_BUSY_TIMEOUT_MS = 10_000
PG_CONNECT_TIMEOUT_S = 10.0

# PostgreSQL SQLSTATEs that mean "not reachable right now": connection exceptions (08),
# shutdown / starting up (57P01-57P03), too many connections (53300).
_UNAVAILABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53300")
_SQLITE_UNAVAILABLE = ("locked", "busy", "unable to open", "disk i/o", "disk is full", "readonly", "closed")


def pool_options(max_connections: int) -> dict[str, Any]:
    """Pool arguments for at most ``max_connections`` server connections: up to 5 kept open
    while idle, the rest opened under load and closed when returned."""
    if max_connections < 1:
        raise ValueError(f"max_connections must be at least 1, got {max_connections!r}")
    kept = min(5, max_connections)
    return {"pool_size": kept, "max_overflow": max_connections - kept}


def create_engine(url: str | URL, *, max_connections: int | None = None, **kwargs: Any) -> AsyncEngine:
    """Create an :class:`AsyncEngine` for ``url`` (normalised) with botkit's settings.

    Build engines you hand to :class:`~botkit.store.sql.SQLConversationStore` with this
    function. ``max_connections`` bounds a server database's pool (config
    ``database_pool_size``; default SQLAlchemy's 15). Extra keyword arguments go to
    :func:`create_async_engine`.
    """
    target = normalize_database_url(url)
    options: dict[str, Any] = {}
    if is_sqlite(target):
        Path(target.database or "").expanduser().parent.mkdir(parents=True, exist_ok=True)
        options["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    else:
        options["pool_pre_ping"] = True
        options["connect_args"] = {"timeout": PG_CONNECT_TIMEOUT_S}
        if max_connections is not None:
            options.update(pool_options(max_connections))
    options.update(kwargs)
    engine = create_async_engine(target, **options)
    if is_sqlite(target):
        install_sqlite_hooks(engine)
    return engine


class EngineTables:
    """Base of the classes that keep tables beside the store's in the bot's database
    (API keys, agents, webhooks): an :class:`AsyncEngine` handed in (no I/O in the
    constructor), or one of their own from :meth:`from_url`, disposed by :meth:`aclose`."""

    def __init__(self, engine: AsyncEngine, *, owns_engine: bool = False) -> None:
        self.engine = engine
        self._owns_engine = owns_engine

    @classmethod
    def from_url(cls, database_url: str, *, max_connections: int | None = None) -> Self:
        """The tables in the database at ``database_url``, on an engine of their own (no I/O
        yet) with at most ``max_connections`` connections on a server database."""
        return cls(create_engine(database_url, max_connections=max_connections), owns_engine=True)

    async def migrate(self) -> None:
        """Bring the schema up to date (the store does it when it opens)."""
        from botkit.store.migrate import ensure_schema

        await ensure_schema(self.engine)

    async def aclose(self) -> None:
        """Dispose the engine if :meth:`from_url` created it."""
        if self._owns_engine:
            await self.engine.dispose()


def install_sqlite_hooks(engine: AsyncEngine | Engine) -> None:
    """Add botkit's SQLite connection and transaction hooks to ``engine`` (idempotent)."""
    sync_engine = engine.sync_engine if isinstance(engine, AsyncEngine) else engine
    if not event.contains(sync_engine, "connect", _sqlite_connect):
        event.listen(sync_engine, "connect", _sqlite_connect)
    if not event.contains(sync_engine, "begin", _sqlite_begin):
        event.listen(sync_engine, "begin", _sqlite_begin)


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # botkit emits BEGIN itself (see _sqlite_begin)
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    dbapi_connection = conn.connection.dbapi_connection
    if dbapi_connection is not None and dbapi_connection.isolation_level is not None:
        dbapi_connection.isolation_level = None  # an engine built before the hooks were added
    immediate = conn.get_execution_options().get(WRITE, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means the database cannot be reached (rather than a bad query)."""
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        if "sqlite" in type(exc.orig).__module__:
            # SQLite reports bugs ("no such table", syntax errors) as OperationalError too.
            message = str(exc.orig).lower()
            return any(phrase in message for phrase in _SQLITE_UNAVAILABLE)
        if isinstance(exc, (OperationalError, InterfaceError)):
            return True
        sqlstate = getattr(exc.orig, "sqlstate", None) or ""
        if sqlstate == "55000" and "not currently accepting connections" in str(exc.orig):
            return True  # ALTER DATABASE ... ALLOW_CONNECTIONS false (maintenance): retry later
        return isinstance(sqlstate, str) and sqlstate.startswith(_UNAVAILABLE_SQLSTATES)
    # asyncpg raises socket errors (connection refused, reset) and timeouts unwrapped.
    return isinstance(exc, (OSError, asyncio.TimeoutError, ConnectionError))


def translate(exc: BaseException, action: str, url: URL | None) -> BotkitError:
    """The botkit error for a database failure while doing ``action``."""
    where = f" at {display_url(url)}" if url is not None else ""
    detail = _first_line(exc)
    if is_unavailable(exc):
        return StoreUnavailable(
            f"cannot reach the conversation database{where} while trying to {action}: {detail}",
            hint="check database_url and that the database server is running; the operation can be retried",
        )
    if isinstance(exc, IntegrityError):
        return StoreError(f"{action}: the database refused the change: {detail}")
    return StoreError(f"{action} failed{where}: {detail}")


@asynccontextmanager
async def translating(
    action: str, url: URL | None, *, passthrough: tuple[type[BaseException], ...] = ()
) -> AsyncIterator[None]:
    """Translate database and connection errors raised in the block to botkit errors
    (except those in ``passthrough``, which the caller handles)."""
    try:
        yield
    except BotkitError:
        raise
    except passthrough:
        raise
    except (SQLAlchemyError, OSError, asyncio.TimeoutError) as exc:
        raise translate(exc, action, url) from exc


def _first_line(exc: BaseException) -> str:
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        text = str(exc.orig)
    else:
        text = str(exc) or type(exc).__name__
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__
