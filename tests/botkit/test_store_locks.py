"""Turn locks: one turn per conversation at a time, across tasks, stores and processes.

Run as a script, this file is the worker process the cross-process tests start:
``python test_store_locks.py hold URL CONVERSATION`` takes the lock, says ``locked`` and
dies without releasing it when a line arrives on stdin; ``... pairs URL CONVERSATION N TAG``
says ``ready``, waits for ``go`` and appends N user+assistant pairs, each under the lock.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from pathlib import Path

import pytest

from botkit.errors import ConversationLocked, StoreUnavailable
from botkit.store import SQLConversationStore

WORKER = os.path.abspath(__file__)
LEASE_S = 1.0  # the SQLite lease every store here uses (as the `store` fixture does)


async def _turn(store: SQLConversationStore, conversation_id: str, spans: list[tuple[float, float]]) -> None:
    async with store.turn_lock(conversation_id, timeout=10):
        entered = time.monotonic()
        await asyncio.sleep(0.1)
        spans.append((entered, time.monotonic()))


def _assert_no_overlap(spans: list[tuple[float, float]]) -> None:
    ordered = sorted(spans)
    for (_, exited), (entered, _) in zip(ordered, ordered[1:], strict=False):
        assert entered >= exited, f"turns overlapped: {ordered}"


async def test_turns_of_one_conversation_run_one_at_a_time(store: SQLConversationStore, store_url: str) -> None:
    conversation = await store.create_conversation(bot="b", channel="web")
    spans: list[tuple[float, float]] = []
    # Two tasks on one store (in-process lock) and one on a second store (database lock only).
    async with SQLConversationStore(store_url, lock_lease_s=LEASE_S) as other:
        await asyncio.gather(
            _turn(store, conversation.id, spans),
            _turn(store, conversation.id, spans),
            _turn(other, conversation.id, spans),
        )
    assert len(spans) == 3
    _assert_no_overlap(spans)


async def test_other_conversations_do_not_wait(store: SQLConversationStore, store_url: str) -> None:
    busy = await store.create_conversation(bot="b", channel="web")
    free = await store.create_conversation(bot="b", channel="web")
    async with SQLConversationStore(store_url, lock_lease_s=LEASE_S) as other:
        async with store.turn_lock(busy.id, timeout=5):
            started = time.monotonic()
            async with store.turn_lock(free.id, timeout=5), other.turn_lock(uuid.uuid4().hex, timeout=5):
                pass
            assert time.monotonic() - started < 0.5


async def test_waiting_past_the_timeout_raises_conversation_locked(store: SQLConversationStore, store_url: str) -> None:
    conversation = await store.create_conversation(bot="b", channel="web")
    async with SQLConversationStore(store_url, lock_lease_s=LEASE_S) as other:
        async with store.turn_lock(conversation.id, timeout=5):
            for waiter in (store, other):  # in-process wait, then database wait
                started = time.monotonic()
                with pytest.raises(ConversationLocked, match=f"conversation {conversation.id} is busy"):
                    async with waiter.turn_lock(conversation.id, timeout=0.3):
                        pass
                assert 0.25 < time.monotonic() - started < 2.0
            # The holder renews its lease: still held well past the lease's length.
            await asyncio.sleep(LEASE_S * 1.2)
            with pytest.raises(ConversationLocked):
                async with other.turn_lock(conversation.id, timeout=0.3):
                    pass
        async with other.turn_lock(conversation.id, timeout=1):  # released at the end of the block
            pass


async def test_a_lock_dies_with_its_holder_process(store: SQLConversationStore, store_url: str) -> None:
    conversation = await store.create_conversation(bot="b", channel="web")
    holder = await _start_worker("hold", store_url, conversation.id)
    try:
        assert await _read_line(holder) == "locked"
        with pytest.raises(ConversationLocked):
            async with store.turn_lock(conversation.id, timeout=0.3):
                pass
        await _send(holder, "die")
        assert await asyncio.wait_for(holder.wait(), 10) == 0
        started = time.monotonic()
        async with store.turn_lock(conversation.id, timeout=5):
            waited = time.monotonic() - started
        assert waited < LEASE_S + 1.0
    finally:
        await _stop(holder)


async def test_processes_append_turns_without_interleaving(store: SQLConversationStore, store_url: str) -> None:
    conversation = await store.create_conversation(bot="b", channel="web")
    pairs = 5
    workers = [await _start_worker("pairs", store_url, conversation.id, str(pairs), tag) for tag in ("A", "B")]
    try:
        for worker in workers:
            assert await _read_line(worker) == "ready"
        for worker in workers:
            await _send(worker, "go")
        for worker in workers:
            assert await asyncio.wait_for(worker.wait(), 30) == 0
    finally:
        for worker in workers:
            await _stop(worker)
    history = await store.history(conversation.id, limit=1000)
    assert len(history) == 2 * 2 * pairs
    for user, reply in zip(history[::2], history[1::2], strict=True):
        assert (user.role, reply.role) == ("user", "assistant")
        assert reply.reply_to == user.id and reply.text == f"re: {user.text}"
    assert [m.seq for m in history] == list(range(1, len(history) + 1))


# -- the worker process -------------------------------------------------------------------


async def _start_worker(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, WORKER, *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )


async def _read_line(process: asyncio.subprocess.Process) -> str:
    assert process.stdout is not None
    return (await asyncio.wait_for(process.stdout.readline(), 20)).decode().strip()


async def _send(process: asyncio.subprocess.Process, line: str) -> None:
    assert process.stdin is not None
    process.stdin.write(line.encode() + b"\n")
    await process.stdin.drain()


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.kill()
        await process.wait()


async def _worker(mode: str, url: str, conversation_id: str, *rest: str) -> None:
    loop = asyncio.get_running_loop()
    store = SQLConversationStore(url, lock_lease_s=LEASE_S, migrate=False)  # the test migrated it
    await store.open()
    if mode == "hold":
        async with store.turn_lock(conversation_id, timeout=10):
            print("locked", flush=True)
            await loop.run_in_executor(None, sys.stdin.readline)  # the loop keeps renewing the lease
            os._exit(0)  # die holding the lock: no release, no cleanup
    count, tag = int(rest[0]), rest[1]
    print("ready", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    for i in range(count):
        async with store.turn_lock(conversation_id, timeout=20):
            user, _ = await store.add_user_message(conversation_id, f"{tag}{i}")
            await asyncio.sleep(0.01)
            await store.add_bot_message(conversation_id, f"re: {tag}{i}", reply_to=user.id)
    await store.close()


if __name__ == "__main__":
    asyncio.run(_worker(*sys.argv[1:]))


async def test_pool_settings_bound_postgresql_connections(postgres_url: str, tmp_path: Path) -> None:
    from botkit.config import load_config

    (tmp_path / "bot.yaml").write_text(
        f"database_url: {postgres_url}\ndatabase_pool_size: 3\ndatabase_max_turn_connections: 1\n", encoding="utf-8"
    )
    async with SQLConversationStore.from_config(load_config(tmp_path)) as bounded:
        engine = bounded._engine
        assert engine is not None and engine.pool.size() + engine.pool._max_overflow == 3  # type: ignore[attr-defined]
        busy = await bounded.create_conversation(bot="b", channel="web")
        other = await bounded.create_conversation(bot="b", channel="web")
        async with bounded.turn_lock(busy.id, timeout=5):
            # The one turn-lock connection is taken: another conversation's turn waits for it,
            # then fails with an error that names the setting, not a bare timeout.
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match="database_max_turn_connections"):
                async with bounded.turn_lock(other.id, timeout=0.3):
                    pass
            assert time.monotonic() - started < 2.0
        async with bounded.turn_lock(other.id, timeout=5):  # free again once the first turn ended
            pass
