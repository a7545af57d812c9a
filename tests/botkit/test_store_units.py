"""SQLite units of work on worker threads: one writer at a time in the process, reads beside it."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url

from botkit.store import engine
from botkit.store import units as units_module
from botkit.store.units import ThreadUnits


async def test_write_units_take_turns_and_reads_run_beside_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No busy timeout: a writer that found the database locked would fail at once, so every
    # write succeeding shows that they queue in the process, not in SQLite's busy handler
    # (which sleeps up to 25 ms, then 50, 100, between its retries).
    monkeypatch.setattr(engine, "SQLITE_BUSY_TIMEOUT_MS", 0)
    monkeypatch.setattr(units_module, "SQLITE_BUSY_TIMEOUT_MS", 0)
    units = ThreadUnits(make_url(f"sqlite+aiosqlite:///{tmp_path / 'units.db'}"), workers=4)
    try:
        await units.run("create", lambda c: c.execute(text("CREATE TABLE t (i INTEGER)")), write=True)
        guard, active, peak = threading.Lock(), [0], [0]

        def write(connection: Connection, i: int) -> None:
            with guard:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
            connection.execute(text("INSERT INTO t VALUES (:i)"), {"i": i})
            time.sleep(0.02)
            with guard:
                active[0] -= 1

        await asyncio.gather(*(units.run("write", write, i, write=True) for i in range(8)))
        assert peak[0] == 1

        held, release = threading.Event(), threading.Event()

        def slow_write(connection: Connection) -> None:
            connection.execute(text("INSERT INTO t VALUES (100)"))
            held.set()
            release.wait(10)

        writing = asyncio.ensure_future(units.run("slow write", slow_write, write=True))
        await asyncio.to_thread(held.wait, 10)
        count = await units.run("count", lambda c: c.execute(text("SELECT count(*) FROM t")).scalar_one())
        assert count == 8  # a read does not wait for the write in progress, and sees the last commit
        release.set()
        await writing
        assert await units.run("count", lambda c: c.execute(text("SELECT count(*) FROM t")).scalar_one()) == 9
    finally:
        await units.close()
