"""Running the store's units of work, each as one plain function of a SQLAlchemy ``Connection``.

A unit of work is a synchronous function ``work(connection, *args)`` that runs Core
statements and returns plain values; it runs in one transaction (``BEGIN IMMEDIATE`` on
SQLite when ``write=True``), committed when it returns and rolled back when it raises.

* :class:`AsyncUnits` runs it on an :class:`AsyncEngine` through
  ``AsyncConnection.run_sync``: PostgreSQL (asyncpg), and any engine a caller hands to
  the store.
* :class:`ThreadUnits` runs it on a SQLite file the store opened itself: the whole
  function runs on a pysqlite connection in a worker thread, so a unit costs one thread
  hop. Through aiosqlite every statement costs several (cursor, execute, fetch, close,
  plus BEGIN and COMMIT), and on a busy machine each hop can wait milliseconds for the
  scheduler. The database work itself is the same SQLite calls, off the event loop.

Both translate database errors to botkit errors (see :func:`~botkit.store.engine.translating`).
"""

from __future__ import annotations

import asyncio
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext, suppress
from typing import Any, TypeVar

from sqlalchemy import Executable, Row
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from botkit.store.engine import SQLITE_BUSY_TIMEOUT_MS, WRITE, install_sqlite_hooks, translating

T = TypeVar("T")
Work = Callable[..., T]

SQLITE_WORKERS = 8
"""Worker threads (and pysqlite connections) of a :class:`ThreadUnits`."""


class Units(ABC):
    """Runs units of work on one database."""

    def __init__(self, url: URL) -> None:
        self.url = url
        self.dialect = url.get_backend_name()

    @abstractmethod
    async def run(
        self,
        action: str,
        work: Work[T],
        *args: Any,
        write: bool = False,
        passthrough: tuple[type[BaseException], ...] = (),
    ) -> T:
        """Run ``work(connection, *args)`` in one transaction and return its result.

        ``action`` names the operation in error messages; exceptions in ``passthrough``
        reach the caller untranslated (e.g. the ``IntegrityError`` of a duplicate).
        """

    async def execute(
        self,
        action: str,
        statement: Executable,
        params: Mapping[str, Any] | None = None,
        *,
        write: bool = False,
        passthrough: tuple[type[BaseException], ...] = (),
    ) -> Sequence[Row[Any]]:
        """Run one statement, atomic by itself, and return its rows (none if it returns none)."""
        return await self.run(action, _rows, statement, params, write=write, passthrough=passthrough)

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the runner holds. Idempotent."""


def _rows(connection: Connection, statement: Executable, params: Mapping[str, Any] | None) -> Sequence[Row[Any]]:
    result = connection.execute(statement, params)
    return result.all() if result.returns_rows else []


class AsyncUnits(Units):
    """Units of work on an :class:`AsyncEngine`, through ``run_sync``.

    On PostgreSQL a single statement (:meth:`execute`) runs without ``BEGIN`` / ``COMMIT``
    (a statement is atomic and its own snapshot), which saves two round trips.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine.url)
        self.engine = engine
        self._autocommit_statements = engine.dialect.name == "postgresql"

    async def run(
        self,
        action: str,
        work: Work[T],
        *args: Any,
        write: bool = False,
        passthrough: tuple[type[BaseException], ...] = (),
    ) -> T:
        async with translating(action, self.url, passthrough=passthrough), self.engine.connect() as connection:
            if write:
                await connection.execution_options(**{WRITE: True})
            async with connection.begin():
                return await connection.run_sync(work, *args)

    async def execute(
        self,
        action: str,
        statement: Executable,
        params: Mapping[str, Any] | None = None,
        *,
        write: bool = False,
        passthrough: tuple[type[BaseException], ...] = (),
    ) -> Sequence[Row[Any]]:
        if not self._autocommit_statements:
            return await super().execute(action, statement, params, write=write, passthrough=passthrough)
        async with translating(action, self.url, passthrough=passthrough), self.engine.connect() as connection:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            result = await connection.execute(statement, params)
            return result.all() if result.returns_rows else []


class ThreadUnits(Units):
    """Units of work on a SQLite file, each run whole in a worker thread (pysqlite).

    ``url`` is the store's (aiosqlite) URL; this runner opens the same file through the
    standard ``sqlite3`` module, with botkit's connection and ``BEGIN`` hooks: one
    connection per worker thread in use (at most ``workers``), kept by its thread.

    Cancelling the task that awaits a unit does not interrupt the unit once its thread has
    started it (SQLite cannot be interrupted half-way through a transaction from here):
    the cancellation is delivered when the unit has ended, committed or rolled back, so
    the caller's cleanup sees the database as the unit left it. A unit still queued is
    dropped.
    """

    def __init__(self, url: URL, *, workers: int = SQLITE_WORKERS) -> None:
        super().__init__(url)
        self.engine: Engine = create_sync_engine(
            url.set(drivername="sqlite+pysqlite"),
            pool_size=workers,
            max_overflow=0,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        )
        install_sqlite_hooks(self.engine)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="botkit-sqlite")
        self._local = threading.local()
        self._connections: list[Connection] = []
        self._connections_lock = threading.Lock()
        # One writer at a time in this process: SQLite admits one anyway, and a writer
        # refused by another connection waits in SQLite's busy handler, which sleeps 1, 2,
        # 5, 10, 15, 20, 25... ms between retries instead of waking when the write ends.
        self._write_lock = threading.Lock()

    async def run(
        self,
        action: str,
        work: Work[T],
        *args: Any,
        write: bool = False,
        passthrough: tuple[type[BaseException], ...] = (),
    ) -> T:
        async with translating(action, self.url, passthrough=passthrough):
            future = self._executor.submit(self._unit, work, args, write)
            try:
                return await asyncio.wrap_future(future)
            except asyncio.CancelledError:
                await _until_done(future)
                raise

    def _unit(self, work: Work[T], args: tuple[Any, ...], write: bool) -> T:
        connection = self._thread_connection()
        try:
            connection.execution_options(**{WRITE: write})
            with self._write_lock if write else nullcontext(), connection.begin():
                return work(connection, *args)
        finally:
            if connection.invalidated:
                self._forget(connection)

    def _thread_connection(self) -> Connection:
        """This worker thread's connection, kept checked out between units (a pool checkout
        and return cost more than a small unit itself)."""
        connection: Connection | None = getattr(self._local, "connection", None)
        if connection is None or connection.closed:
            connection = self.engine.connect()
            self._local.connection = connection
            with self._connections_lock:
                self._connections.append(connection)
        return connection

    def _forget(self, connection: Connection) -> None:
        self._local.connection = None
        with self._connections_lock:
            self._connections.remove(connection)
        with suppress(Exception):
            connection.close()

    async def close(self) -> None:
        await asyncio.to_thread(self._executor.shutdown, wait=True)
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            with suppress(Exception):
                connection.close()
        self.engine.dispose()


async def _until_done(future: Future[Any]) -> None:
    """Wait for a unit its caller gave up on, unless it never started."""
    if future.cancelled():
        return
    with suppress(Exception, asyncio.CancelledError):
        await asyncio.wrap_future(future)
