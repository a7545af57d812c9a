"""Per-conversation turn locks that work across processes.

* :class:`LocalLocks`: one :class:`asyncio.Lock` per conversation, so turns within one
  process queue without polling the database.
* :class:`AdvisoryLock` (PostgreSQL): a session-level advisory lock (``pg_try_advisory_lock``,
  else a wait in ``pg_advisory_lock`` under ``lock_timeout``) on a dedicated connection
  held for the turn. If the holder dies its connection drops and the server releases the
  lock at once.
* :class:`LeaseLock` (SQLite): a lease row in ``turn_locks`` (conversation id, holder,
  expiry), taken under ``BEGIN IMMEDIATE`` when absent or expired, renewed by the holder
  while the turn runs and deleted at the end. If the holder dies the lease lapses.

Both can run a read right after the lock is taken (the turn's fresh look at the
conversation), in the lock's own round trip or transaction.

:class:`TurnLocks` puts them together for the store. ``acquire`` raises
:class:`ConversationLocked` once the deadline (``loop.time()``) passes; ``release`` never
raises (a failed release is logged: the lock lapses on its own).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any, TypeVar, cast

from sqlalchemy import Table, bindparam, delete, text, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql import Executable

from botkit._aio import within
from botkit.errors import ConversationLocked, StoreUnavailable
from botkit.store.engine import PG_CONNECT_TIMEOUT_S, pool_options, translating
from botkit.store.models import TurnLockRow
from botkit.store.units import Units

log = logging.getLogger("botkit.store")

T = TypeVar("T")
Read = Callable[[Connection], T]
"""A read run once the lock is held (see :meth:`TurnLocks.hold`)."""

_turn_locks = cast(Table, TurnLockRow.__table__)
_FIRST_POLL_S = 0.01
_MAX_POLL_S = 0.1
_LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL: lock_timeout expired


def locked_error(conversation_id: str, timeout: float) -> ConversationLocked:
    """The error raised when a turn lock is not free within ``timeout`` seconds."""
    return ConversationLocked(
        f"conversation {conversation_id} is busy: another turn held its lock for more than {timeout:g}s",
        hint="an earlier message of this conversation is still being answered; retry when it is done, "
        "or raise limits.lock_timeout_s",
    )


class LocalLocks:
    """One :class:`asyncio.Lock` per conversation id, dropped when no task uses it."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str, timeout: float) -> AsyncIterator[None]:
        """Hold ``key``'s lock for the block; raise :class:`ConversationLocked` after ``timeout``."""
        lock, users = self._entries.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._entries[key] = (lock, users + 1)
        try:
            try:
                await within(lock.acquire(), timeout)
            except asyncio.TimeoutError:
                raise locked_error(key, timeout) from None
            try:
                yield
            finally:
                lock.release()
        finally:
            self._forget(key)

    async def take_if_free(self, key: str) -> bool:
        """Take ``key``'s lock if no task holds or waits for it, without waiting; ``True``
        when taken (give it back with :meth:`give_back`)."""
        if key in self._entries:
            return False
        lock = asyncio.Lock()
        self._entries[key] = (lock, 1)
        await lock.acquire()  # a new lock: granted at once
        return True

    def give_back(self, key: str) -> None:
        """Release a lock taken with :meth:`take_if_free`."""
        self._entries[key][0].release()
        self._forget(key)

    def _forget(self, key: str) -> None:
        lock, users = self._entries[key]
        if users <= 1:
            del self._entries[key]
        else:
            self._entries[key] = (lock, users - 1)


async def _poll(
    attempt: Callable[[], Awaitable[tuple[bool, T]]], deadline: float, on_timeout: ConversationLocked
) -> T:
    """Call ``attempt()`` with backoff until it succeeds and return its value; raise
    ``on_timeout`` at ``deadline``."""
    loop = asyncio.get_running_loop()
    delay = _FIRST_POLL_S
    while True:
        done, value = await attempt()
        if done:
            return value
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise on_timeout
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * 2, _MAX_POLL_S)


def advisory_key(conversation_id: str) -> int:
    """The signed 64-bit PostgreSQL advisory-lock key of a conversation's turn lock."""
    digest = hashlib.blake2b(f"botkit.turn:{conversation_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class AdvisoryLock:
    """A conversation's turn lock as a PostgreSQL session-level advisory lock."""

    def __init__(self, engine: AsyncEngine, conversation_id: str) -> None:
        self._engine = engine
        self._conversation_id = conversation_id
        self._key = advisory_key(conversation_id)
        self._connection: AsyncConnection | None = None

    async def acquire(self, deadline: float, timeout: float, read: Read[T] | None = None) -> T | None:
        """Wait for the lock until ``deadline``; keep its connection until :meth:`release`.

        A free lock is taken in one round trip (``pg_try_advisory_lock``); a held one is
        waited for in the server (``pg_advisory_lock`` under a ``lock_timeout``), so a
        released lock passes to the next waiter at once, without polling. ``read`` then
        runs on the lock's connection, after the lock is held, and its value is returned.
        """
        loop = asyncio.get_running_loop()
        try:
            connection = await asyncio.wait_for(self._engine.connect(), max(deadline - loop.time(), 0.001))
        except asyncio.TimeoutError:
            pool = self._engine.pool
            size = pool.size() + max(getattr(pool, "_max_overflow", 0), 0)  # QueuePool's limit
            if pool.checkedout() >= size:
                raise StoreUnavailable(
                    f"all {size} turn-lock connections of this worker are busy with other turns",
                    hint="raise database_max_turn_connections (and PostgreSQL's max_connections), or add workers",
                ) from None
            raise
        try:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            if not await connection.scalar(_PG_TRY_LOCK, {"k": self._key}):
                await self._wait(connection, deadline, timeout)
            value = await connection.run_sync(read) if read is not None else None
        except BaseException:
            # Also when cancelled while the server was granting the lock: dropping the
            # connection is the one sure way to give the lock back.
            await _discard(connection)
            raise
        self._connection = connection
        return value

    async def _wait(self, connection: AsyncConnection, deadline: float, timeout: float) -> None:
        wait_ms = max(int((deadline - asyncio.get_running_loop().time()) * 1000), 1)  # 0 would mean "forever"
        await connection.execute(_PG_SET_LOCK_TIMEOUT, {"ms": f"{wait_ms}ms"})
        try:
            await connection.execute(_PG_LOCK, {"k": self._key})
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) == _LOCK_NOT_AVAILABLE:
                raise locked_error(self._conversation_id, timeout) from None
            raise
        await connection.execute(_PG_RESET_LOCK_TIMEOUT)

    async def release(self) -> None:
        """Unlock and return the connection to the pool (or drop it if that fails)."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            unlocked = await connection.scalar(_PG_UNLOCK, {"k": self._key})
        except BaseException as exc:
            await _discard(connection)
            if not isinstance(exc, Exception):
                raise
            log.warning("turn lock of %s: unlock failed (%s); connection dropped", self._conversation_id, exc)
            return
        if not unlocked:  # pragma: no cover - would mean the session lost the lock
            log.warning("turn lock of %s was not held at release; connection dropped", self._conversation_id)
            await _discard(connection)
            return
        await connection.close()


async def _discard(connection: AsyncConnection) -> None:
    with suppress(Exception):
        await connection.invalidate()
    with suppress(Exception):
        await connection.close()


class LeaseLock:
    """A conversation's turn lock as a renewed lease row (SQLite).

    Taking the lease is one statement (an upsert that wins only over an expired lease) in
    a ``BEGIN IMMEDIATE`` transaction; ``read`` runs in that same transaction, after the
    lease is ours, so the turn's first read costs no extra unit of work.
    """

    def __init__(self, units: Units, conversation_id: str, *, lease_s: float) -> None:
        self._units = units
        self._conversation_id = conversation_id
        self._lease_s = lease_s
        self._holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self._renewal: asyncio.TimerHandle | None = None  # the first renewal, a third of a lease away
        self._renewer: asyncio.Task[None] | None = None  # renewing, once a turn outlasts that
        self._released = False

    async def acquire(self, deadline: float, timeout: float, read: Read[T] | None = None) -> T | None:
        """Wait until the lease is free or expired and take it; renew it until :meth:`release`."""

        async def attempt() -> tuple[bool, T | None]:
            return await self._units.run(
                "take a conversation's turn lock", _take, self._key(until=time.time() + self._lease_s), read, write=True
            )

        try:
            value = await _poll(attempt, deadline, locked_error(self._conversation_id, timeout))
        except asyncio.CancelledError:
            await self._delete()  # the attempt in flight may have taken the lease
            raise
        self._schedule_renewal()
        return value

    async def take_after(
        self, action: str, work: Callable[..., T], args: tuple[Any, ...], read: Callable[[Connection, T], Any], *,
        passthrough: tuple[type[BaseException], ...] = (),
    ) -> tuple[T, bool, Any]:
        """One try, no waiting: the write ``work(connection, *args)``, then the lease if it is
        free, then ``read(connection, value)``, in one transaction. Returns ``(value, taken,
        read's value or None)``; a taken lease is renewed until :meth:`release`."""
        params = self._key(until=time.time() + self._lease_s)
        try:
            value, taken, found = await self._units.run(
                action, _write_then_take, work, args, params, read, write=True, passthrough=passthrough
            )
        except asyncio.CancelledError:
            await self._delete()  # the unit may have committed before the cancellation arrived
            raise
        if taken:
            self._schedule_renewal()
        return value, taken, found

    async def release(self) -> None:
        """Stop renewing and delete the lease (if it is still ours and not released yet)."""
        await self._stop_renewing()
        if not self._released:
            await self._delete()

    async def release_with(self, action: str, work: Callable[..., T], *args: Any) -> T:
        """Run the unit of work ``work(connection, *args)`` and delete the lease in the same
        transaction: the holder's last write and the release commit together (one unit
        instead of two). :meth:`release` then has nothing left to do; if ``work`` fails the
        lease is still held (and renewed) until :meth:`release`."""
        await self._stop_renewing()
        try:
            value = await self._units.run(action, _then_release, work, args, self._key(), write=True)
        except BaseException:
            self._schedule_renewal()
            raise
        self._released = True
        return value

    def _schedule_renewal(self) -> None:
        """Renew from a third of a lease on: a timer, so a turn that ends sooner (most) never
        starts the renewing task."""
        loop = asyncio.get_running_loop()
        self._renewal = loop.call_later(self._lease_s / 3, self._start_renewing)

    def _start_renewing(self) -> None:
        self._renewal = None
        self._renewer = asyncio.get_running_loop().create_task(self._renew())

    async def _stop_renewing(self) -> None:
        if self._renewal is not None:
            self._renewal.cancel()
            self._renewal = None
        if self._renewer is not None:
            self._renewer.cancel()
            with suppress(asyncio.CancelledError, Exception):
                await self._renewer
            self._renewer = None

    async def _delete(self) -> None:
        try:
            await self._units.run("release a conversation's turn lock", _execute, _RELEASE, self._key(), write=True)
        except Exception as exc:
            log.warning("turn lock of %s: release failed (%s); the lease will lapse", self._conversation_id, exc)

    def _key(self, **values: float) -> dict[str, Any]:
        return {"cid": self._conversation_id, "me": self._holder, **values}

    async def _renew(self) -> None:
        """Renew now, then every third of a lease, until cancelled or the lease was lost."""
        while True:
            try:
                renewed = await self._units.run(
                    "renew a conversation's turn lock", _execute, _RENEW, self._key(until=time.time() + self._lease_s),
                    write=True,
                )
            except Exception as exc:
                log.warning("turn lock of %s: renewal failed (%s)", self._conversation_id, exc)
            else:
                if not renewed:
                    log.warning("turn lock of %s: the lease lapsed and was taken over", self._conversation_id)
                    return
            await asyncio.sleep(self._lease_s / 3)


def _take(connection: Connection, params: dict[str, Any], read: Read[T] | None) -> tuple[bool, T | None]:
    if connection.execute(_TAKE, {**params, "now": time.time()}).rowcount != 1:
        return False, None
    return True, (read(connection) if read is not None else None)


def _write_then_take(
    connection: Connection, work: Callable[..., T], args: tuple[Any, ...], params: dict[str, Any],
    read: Callable[[Connection, T], Any],
) -> tuple[T, bool, Any]:
    value = work(connection, *args)
    if connection.execute(_TAKE, {**params, "now": time.time()}).rowcount != 1:
        return value, False, None
    return value, True, read(connection, value)


def _then_release(connection: Connection, work: Callable[..., T], args: tuple[Any, ...], key: dict[str, Any]) -> T:
    value = work(connection, *args)
    connection.execute(_RELEASE, key)
    return value


def _execute(connection: Connection, statement: Executable, params: dict[str, Any]) -> int:
    return int(connection.execute(statement, params).rowcount)


class TurnLocks:
    """The store's turn locks: queue on an in-process lock, then take the database lock.

    On PostgreSQL the locks' connections come from a pool of their own (up to
    ``max_connections``), so turns that hold a lock never starve the store's queries.
    """

    def __init__(self, units: Units, *, lease_s: float, max_connections: int = 50) -> None:
        self._units = units
        self._lease_s = lease_s
        self._local = LocalLocks()
        self._leases: dict[str, LeaseLock] = {}  # held by this process's turns, by conversation
        self._lock_engine: AsyncEngine | None = None
        if units.url.get_backend_name() == "postgresql":
            self._lock_engine = create_async_engine(
                units.url,
                **pool_options(max_connections),
                pool_pre_ping=True,
                connect_args={"timeout": PG_CONNECT_TIMEOUT_S},
            )

    @asynccontextmanager
    async def hold(self, conversation_id: str, timeout: float, read: Read[T] | None = None) -> AsyncIterator[T | None]:
        """Hold ``conversation_id``'s turn lock for the block (see ``ConversationStore.turn_lock``).

        ``read(connection)``, when given, runs once the lock is held, in the same round
        trip where the database allows; the block receives its value (else ``None``).
        """
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        deadline = asyncio.get_running_loop().time() + timeout
        async with self._local.hold(conversation_id, timeout):
            lock: AdvisoryLock | LeaseLock
            if self._lock_engine is not None:
                lock = AdvisoryLock(self._lock_engine, conversation_id)
            else:
                lock = LeaseLock(self._units, conversation_id, lease_s=self._lease_s)
            async with translating("take a conversation's turn lock", self._units.url):
                value = await lock.acquire(deadline, timeout, read)
            if isinstance(lock, LeaseLock):
                self._leases[conversation_id] = lock
            try:
                yield value
            finally:
                self._leases.pop(conversation_id, None)
                await lock.release()

    async def write_then_try(
        self, conversation_id: str, action: str, work: Callable[..., T], args: tuple[Any, ...],
        read: Callable[[Connection, T], Any], *, passthrough: tuple[type[BaseException], ...] = (),
    ) -> tuple[T, LeaseLock | None, Any]:
        """The write ``work(connection, *args)`` and, in the same transaction, the
        conversation's lock when it is free right then (in this process and in the
        database; SQLite only), then ``read(connection, value)``.

        Returns ``(value, lock, read's value)``: ``lock`` is ``None`` when it was not free
        (take it with :meth:`hold`), else held until the caller's ``async with``
        :meth:`holding` block, entered at once, ends. PostgreSQL: the write alone.
        """
        if self._lock_engine is not None or not await self._local.take_if_free(conversation_id):
            return await self._units.run(action, work, *args, write=True, passthrough=passthrough), None, None
        lease = LeaseLock(self._units, conversation_id, lease_s=self._lease_s)
        try:
            value, taken, found = await lease.take_after(action, work, args, read, passthrough=passthrough)
        except BaseException:
            self._local.give_back(conversation_id)
            raise
        if not taken:
            self._local.give_back(conversation_id)
            return value, None, None
        return value, lease, found

    @asynccontextmanager
    async def holding(self, conversation_id: str, lease: LeaseLock) -> AsyncIterator[None]:
        """Hold, for the block, a lock :meth:`write_then_try` took; release it at the end."""
        self._leases[conversation_id] = lease
        try:
            yield
        finally:
            self._leases.pop(conversation_id, None)
            try:
                await lease.release()
            finally:
                self._local.give_back(conversation_id)

    async def run_releasing(self, conversation_id: str, action: str, work: Callable[..., T], *args: Any) -> T:
        """Run the write ``work(connection, *args)``; when this process holds the
        conversation's lease (SQLite), release it in the same transaction (see
        :meth:`LeaseLock.release_with`). Call it from inside :meth:`hold`'s block only,
        as that block's last write."""
        lease = self._leases.get(conversation_id)
        if lease is None:
            return await self._units.run(action, work, *args, write=True)
        return await lease.release_with(action, work, *args)

    async def close(self) -> None:
        """Close the locks' own connections."""
        if self._lock_engine is not None:
            await self._lock_engine.dispose()


_TAKE = sqlite_insert(_turn_locks).values(
    conversation_id=bindparam("cid"), holder=bindparam("me"), expires_at=bindparam("until")
)
_TAKE = _TAKE.on_conflict_do_update(
    index_elements=[_turn_locks.c.conversation_id],
    set_={"holder": _TAKE.excluded.holder, "expires_at": _TAKE.excluded.expires_at},
    where=_turn_locks.c.expires_at < bindparam("now"),
)
_MINE = (_turn_locks.c.conversation_id == bindparam("cid"), _turn_locks.c.holder == bindparam("me"))
_RENEW = update(_turn_locks).where(*_MINE).values(expires_at=bindparam("until"))
_RELEASE = delete(_turn_locks).where(*_MINE)
_PG_TRY_LOCK = text("SELECT pg_try_advisory_lock(:k)")
_PG_LOCK = text("SELECT pg_advisory_lock(:k)")
_PG_UNLOCK = text("SELECT pg_advisory_unlock(:k)")
_PG_SET_LOCK_TIMEOUT = text("SELECT set_config('lock_timeout', :ms, false)")
_PG_RESET_LOCK_TIMEOUT = text("SET lock_timeout TO DEFAULT")
