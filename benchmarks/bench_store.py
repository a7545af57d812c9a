"""Cost of each conversation-store operation, and of the store's share of a turn.

    .venv/bin/python -W ignore benchmarks/bench_store.py [--n 300] [--quick]
        [--postgres postgresql://postgres@127.0.0.1:5432/test | --no-postgres]

For SQLite (a file in a temporary folder) and PostgreSQL (a scratch database created on
the server at ``--postgres`` and dropped afterwards), p50 / p99 / mean of:

* each store operation in isolation (``get_conversation``, ``add_user_message``,
  ``turn_lock`` taken and released with nothing inside, ...);
* ``turn store calls``: the store calls one answered turn makes, in the dialogue
  manager's order, with nothing else in between;
* ``dialogue turn``: a whole :class:`~botkit.dialogue.DialogueManager` turn with a
  retriever that returns fixed passages and a ScriptedBackend with no delay (the
  framework's overhead per turn without retrieval and generation).

For SQLite, two floors as well: one ``SELECT 1`` through aiosqlite (one thread hop), and
a read by primary key through the plain ``sqlite3`` module (no hop). Besides wall time,
each line gives the process's CPU time per call (every thread), which a machine loaded
by other jobs inflates far less than wall time.
Figures go to benchmarks/results/bench_store.json.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from _util import EXAMPLE_BOT, percentile, table, write_results

from botkit.backends.scripted import ScriptedBackend
from botkit.config import load_config
from botkit.dialogue import DialogueManager
from botkit.messages import IncomingMessage
from botkit.router import Router
from botkit.store import SQLConversationStore
from knowledge.types import Passage

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
HISTORY = 13  # limits.history_turns + 1 with the default config
PASSAGES = [
    Passage(
        chunk_id=f"c{i}", source=f"help/article-{i}.md", title=f"Article {i}", section="Steps",
        text=f"Go to Settings > Account and follow the steps of article {i}. " * 4, score=0.8 - i / 10,
    )
    for i in range(3)
]


class FixedRetriever:
    """A retriever with no cost: the same passages for every query."""

    def retrieve(self, query: str, *, k: int | None = None) -> list[Passage]:
        return PASSAGES[: k or len(PASSAGES)]


def stats(samples: list[float], cpu_s: float | None = None) -> dict[str, float]:
    ms = [s * 1000 for s in samples]
    result = {"n": len(ms), "p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99), "mean_ms": statistics.fmean(ms)}
    result["cpu_ms"] = cpu_s * 1000 / len(ms) if cpu_s is not None else float("nan")
    return result


async def timed(n: int, operation: Callable[[int], Awaitable[Any]], *, warmup: int = 10) -> dict[str, float]:
    """Wall time of each call, and this process's CPU time per call (all its threads: a
    figure that a loaded machine inflates much less than wall time)."""
    for i in range(warmup):
        await operation(-1 - i)
    samples = []
    cpu = time.process_time()
    for i in range(n):
        started = time.perf_counter()
        await operation(i)
        samples.append(time.perf_counter() - started)
    return stats(samples, time.process_time() - cpu)


async def measure_store(url: str, n: int) -> dict[str, dict[str, float]]:
    """Every measurement on one database."""
    results: dict[str, dict[str, float]] = {}
    async with SQLConversationStore(url) as store:
        conversations = [await store.create_conversation(bot="bench", channel="web") for _ in range(20)]
        ids = [c.id for c in conversations]
        seeded = []
        for cid in ids:
            for j in range(6):
                user, _ = await store.add_user_message(cid, f"question {j}", channel_message_id=f"seed-{j}")
                await store.add_bot_message(cid, f"answer {j}", reply_to=user.id, citations=[{"number": 1}])
            seeded.append(user)
        tag = uuid.uuid4().hex[:8]

        def pick(i: int) -> str:
            return ids[i % len(ids)]

        async def create(i: int) -> None:
            await store.create_conversation(bot="bench", channel="web", external_id=f"u{i}")

        async def add_user(i: int) -> None:
            await store.add_user_message(pick(i), "How do I reset my password?", channel_message_id=f"{tag}-{i}")

        async def add_user_again(i: int) -> None:  # a redelivered message: the unique constraint answers
            await store.add_user_message(ids[0], "question 5", channel_message_id="seed-5")

        async def add_bot(i: int) -> None:
            cid = pick(i)
            await store.add_bot_message(cid, "You can reset it in Settings [1].", reply_to=None,
                                        citations=[{"number": 1, "source": "a.md"}], backend="scripted", latency_ms=3)

        async def lock(i: int) -> None:
            async with store.turn_lock(pick(i), timeout=10):
                pass

        async def metadata(i: int) -> None:
            await store.update_metadata(pick(i), {"abstentions": None})

        results["get_conversation"] = await timed(n, lambda i: store.get_conversation(pick(i)))
        results["find_conversation"] = await timed(
            n, lambda i: store.find_conversation(bot="bench", channel="web", external_id="nobody"))
        results["create_conversation"] = await timed(n, create)
        results["add_user_message"] = await timed(n, add_user)
        results["add_user_message (duplicate)"] = await timed(n, add_user_again)
        results["add_bot_message"] = await timed(n, add_bot)
        results["get_reply"] = await timed(n, lambda i: store.get_reply(seeded[i % len(seeded)].id))
        results[f"history(limit={HISTORY})"] = await timed(n, lambda i: store.history(pick(i), limit=HISTORY))
        results["update_metadata"] = await timed(n, metadata)
        results["set_state"] = await timed(n, lambda i: store.set_state(pick(i), "bot"))
        results["turn_lock (take + release)"] = await timed(n, lock)
        results["turn store calls"] = await timed(n, lambda i: turn_store_calls(store, pick(i), i))
        results["dialogue turn (fixed passages)"] = await dialogue_turns(store, n)
    return results


async def turn_store_calls(store: SQLConversationStore, conversation_id: str, i: int) -> None:
    """The store calls of one answered turn, in :meth:`DialogueManager._turn`'s order."""
    conversation = await store.get_conversation(conversation_id)
    assert conversation is not None
    user, _ = await store.add_user_message(conversation_id, "How much does Pro cost?", channel_message_id=None)
    async with store.turn(conversation_id, timeout=10):  # the lock, and the conversation read inside it
        await store.history(conversation_id, limit=HISTORY)
        await store.add_bot_message(conversation_id, "It costs $12 [1].", reply_to=user.id,
                                    citations=[{"number": 1, "source": "a.md"}], backend="scripted", latency_ms=3)


async def dialogue_turns(store: SQLConversationStore, n: int) -> dict[str, float]:
    config = load_config(EXAMPLE_BOT, environ={})
    router = Router([ScriptedBackend()])
    manager = DialogueManager(config=config, store=store, retriever=FixedRetriever(), router=router)
    tag = uuid.uuid4().hex[:8]

    async def turn(i: int) -> None:
        # 4 turns per conversation, as bench_turn does: the history grows.
        await manager.handle(IncomingMessage(text="How much does Pro cost?", channel="api",
                                             conversation_id=f"bench-{tag}-{i // 4}"))

    return await timed(n, turn)


async def sqlite_floors(path: Path, n: int) -> dict[str, dict[str, float]]:
    """What one statement costs below SQLAlchemy: through aiosqlite, and in-thread."""
    import aiosqlite

    results: dict[str, dict[str, float]] = {}
    async with aiosqlite.connect(path) as connection:
        results["floor: aiosqlite SELECT 1 (one thread hop)"] = await timed(
            n, lambda i: connection.execute_fetchall("SELECT 1"))
    plain = sqlite3.connect(path)
    try:
        cid = plain.execute("SELECT id FROM conversations LIMIT 1").fetchone()[0]
        samples = []
        cpu = time.process_time()
        for _ in range(n):
            started = time.perf_counter()
            plain.execute("SELECT * FROM conversations WHERE id = ?", (cid,)).fetchall()
            samples.append(time.perf_counter() - started)
        results["floor: sqlite3 read by key (no hop)"] = stats(samples, time.process_time() - cpu)
    finally:
        plain.close()
    return results


def run_postgres(base_url: str, n: int) -> dict[str, dict[str, float]] | None:
    from tests.helpers.postgres import scratch_database

    try:
        with scratch_database(base_url, prefix="botkit_bench") as url:
            return asyncio.run(measure_store(url, n))
    except (OSError, asyncio.TimeoutError) as exc:
        print(f"PostgreSQL skipped: cannot reach {base_url}: {exc}")
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="samples per measurement")
    parser.add_argument("--quick", action="store_true", help="100 samples per measurement")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="server URL; a scratch database is made there")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    n = 100 if args.quick else args.n

    results: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        results["sqlite"] = asyncio.run(measure_store(f"sqlite:///{path}", n))
        results["sqlite"].update(asyncio.run(sqlite_floors(path, n)))
    if not args.no_postgres:
        measured = run_postgres(args.postgres, n)
        if measured is not None:
            results["postgresql"] = measured

    for database, measurements in results.items():
        rows = [[name, r["n"], r["p50_ms"], r["p99_ms"], r["mean_ms"], r["cpu_ms"]] for name, r in measurements.items()]
        print(f"\n{database}")
        print(table(["operation", "n", "p50 ms", "p99 ms", "mean ms", "cpu ms"], rows))
    print("\ncpu ms: this process's CPU time per call, all threads (not the PostgreSQL server's)")
    print(f"\nresults: {write_results('bench_store', {'results': results})}")


if __name__ == "__main__":
    main()
