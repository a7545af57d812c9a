"""Soak test: steady load on the scale-out topology for a long time; does anything grow?

    .venv/bin/python benchmarks/bench_soak.py [--duration 1800] [--clients 16] [--workers 2]
    .venv/bin/python benchmarks/bench_soak.py --chroma-memory 20000   # Chroma RSS per 100k chunks

Starts, on 127.0.0.1, a scratch PostgreSQL database (``BOTKIT_BENCH_POSTGRES_URL`` or
``BOTKIT_TEST_POSTGRES_URL``), ``chroma run``, the OpenAI stub (a 50 ms model) and
``botkit serve --workers N``, then keeps ``--clients`` clients talking (a conversation of
5 turns, then a new one) for ``--duration`` seconds. Every ``--interval`` seconds it
samples each worker's RSS, open file descriptors and threads, the database's connections,
Chroma's RSS, and the turns' p50/p99 latency and errors in that interval. It reports RSS
and fd growth after the warm-up and p99 over time, and writes JSON to
``benchmarks/results/bench_soak-<time>.json``. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._util import RESULTS, machine, percentile, table
from tests.helpers.openai_stub import StubReply
from tests.helpers.processes import (
    QUESTIONS,
    Client,
    FaultyStub,
    free_port,
    make_bot_dir,
    pg_execute,
    scratch_database,
    start_botkit,
    start_chroma,
    worker_pids,
)


def sample_processes(pids: list[int]) -> dict[str, Any]:
    import psutil

    out: dict[str, Any] = {}
    for pid in pids:
        try:
            process = psutil.Process(pid)
            with process.oneshot():
                out[str(pid)] = {"rss_mb": round(process.memory_info().rss / 2**20, 1), "fds": process.num_fds(),
                                 "threads": process.num_threads(), "cpu_s": round(sum(process.cpu_times()[:2]), 1)}
        except psutil.Error:
            out[str(pid)] = None
    return out


async def soak(args: argparse.Namespace, database_url: str) -> dict[str, Any]:
    stub = FaultyStub(text="You can reset your password from the sign-in page [1].")
    stub.default = StubReply(text=stub.default.text, delay_s=args.model_delay)
    stub.start()
    tmp = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    samples: list[dict[str, Any]] = []
    try:
        if True:  # the scratch database is made by main(), outside the event loop
            chroma_port, port = free_port(), free_port()
            chroma = start_chroma(tmp / "chroma", chroma_port, tmp / "chroma.log")
            bot = make_bot_dir(tmp / "bot", stub_url=stub.base_url, openai_extra="  timeout_s: 10\n")
            env = {"BOTKIT_DATABASE_URL": database_url, "BOTKIT_KNOWLEDGE__CHROMA_URL": f"http://127.0.0.1:{chroma_port}"}
            started = time.monotonic()
            serve = start_botkit(bot, port, tmp / "serve.log", workers=args.workers, env=env, timeout=600)
            startup_s = time.monotonic() - started
            database = database_url.rsplit("/", 1)[1]
            try:
                latencies: list[tuple[float, float]] = []
                errors: list[float] = []
                stop = asyncio.Event()
                t0 = time.monotonic()

                async def client(index: int, http: Client) -> None:
                    turn = index
                    while not stop.is_set():
                        conversation_id = await http.conversation()
                        for _ in range(5):
                            if stop.is_set():
                                return
                            sent = await http.send(conversation_id, QUESTIONS[turn % len(QUESTIONS)])
                            turn += 1
                            (latencies.append((time.monotonic() - t0, sent.latencies[-1])) if sent.reply
                             else errors.append(time.monotonic() - t0))
                            if len(http.sent) > 1000:
                                http.sent.clear()  # the client must not grow either

                async def sampler() -> None:
                    last = 0.0
                    while not stop.is_set():
                        await asyncio.sleep(args.interval)
                        now = time.monotonic() - t0
                        window = [lat for at, lat in latencies if last <= at < now]
                        rows = await pg_execute(database_url, "SELECT state, count(*) AS n FROM pg_stat_activity "
                                                "WHERE datname = $1 GROUP BY state", database, database="postgres")
                        samples.append({
                            "t": round(now, 1), "turns": len(window),
                            "turns_per_s": round(len(window) / max(now - last, 1e-9), 2),
                            "p50_ms": round(percentile(window, 50) * 1000, 1) if window else None,
                            "p99_ms": round(percentile(window, 99) * 1000, 1) if window else None,
                            "errors": sum(1 for at in errors if last <= at < now),
                            "workers": sample_processes(worker_pids(serve) if args.workers > 1 else [serve.pid]),
                            "chroma": sample_processes([chroma.pid]).get(str(chroma.pid)),
                            "pg_connections": {str(r["state"]): r["n"] for r in rows},
                        })
                        last = now
                        print(f"t={now:6.0f}s  turns/s {samples[-1]['turns_per_s']:6.2f}  "
                              f"p99 {samples[-1]['p99_ms']} ms  errors {samples[-1]['errors']}  "
                              f"rss {[w['rss_mb'] for w in samples[-1]['workers'].values() if w]} MB  "
                              f"fds {[w['fds'] for w in samples[-1]['workers'].values() if w]}  "
                              f"pg {samples[-1]['pg_connections']}", flush=True)
                        if now >= args.duration:
                            stop.set()

                async with Client(f"http://127.0.0.1:{port}", give_up_s=60, connections=args.clients) as http:
                    await asyncio.gather(sampler(), *(client(i, http) for i in range(args.clients)))
            finally:
                serve.stop()
                chroma.stop()
    finally:
        stub.stop()
    return {"startup_s": round(startup_s, 1), "samples": samples, **summarize(samples, args)}


def summarize(samples: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    after = [s for s in samples if s["t"] >= args.warmup] or samples
    first, last = after[0], after[-1]
    growth = {}
    for pid, end in last["workers"].items():
        start = first["workers"].get(pid)
        if start and end:
            growth[pid] = {"rss_mb": round(end["rss_mb"] - start["rss_mb"], 1), "fds": end["fds"] - start["fds"],
                           "threads": end["threads"] - start["threads"]}
    minutes = max((last["t"] - first["t"]) / 60, 1e-9)
    p99 = [s["p99_ms"] for s in after if s["p99_ms"] is not None]
    return {
        "after_warmup": {"from_s": first["t"], "to_s": last["t"], "growth": growth,
                         "rss_mb_per_minute": {pid: round(g["rss_mb"] / minutes, 2) for pid, g in growth.items()},
                         "chroma_rss_mb": [first["chroma"] and first["chroma"]["rss_mb"],
                                           last["chroma"] and last["chroma"]["rss_mb"]]},
        "turns": sum(s["turns"] for s in samples), "errors": sum(s["errors"] for s in samples),
        "p99_ms_over_time": [(s["t"], s["p99_ms"]) for s in samples],
        "p99_ms_first_last": [p99[0] if p99 else None, p99[-1] if p99 else None],
        "pg_connections_max": max((sum(s["pg_connections"].values()) for s in samples), default=0),
    }


def chroma_memory(chunks: int) -> dict[str, Any]:
    """RSS of a Chroma server before and after adding ``chunks`` 384-dim chunks of ~600 characters."""
    import chromadb
    import numpy as np
    from chromadb.config import Settings

    tmp = Path(tempfile.mkdtemp(prefix="bench-chroma-"))
    port = free_port()
    chroma = start_chroma(tmp / "db", port, tmp / "chroma.log")
    try:
        client = chromadb.HttpClient(host="127.0.0.1", port=port, settings=Settings(anonymized_telemetry=False))
        collection = client.get_or_create_collection("soak", metadata={"hnsw:space": "cosine"},
                                                     embedding_function=None)
        before = sample_processes([chroma.pid])[str(chroma.pid)]
        rng = np.random.default_rng(0)
        text = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 10
        started = time.monotonic()
        batch = 1000
        for start in range(0, chunks, batch):
            vectors = rng.standard_normal((batch, 384)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            collection.add(ids=[f"c{start + i}" for i in range(batch)], embeddings=vectors,
                           documents=[text] * batch,
                           metadatas=[{"source": f"doc{(start + i) // 10}.md", "ordinal": i} for i in range(batch)])
        load_s = time.monotonic() - started
        query_started = time.monotonic()
        for _ in range(50):
            collection.query(query_embeddings=[rng.standard_normal(384).astype(np.float32)], n_results=20,
                             include=["distances"])
        query_ms = (time.monotonic() - query_started) / 50 * 1000
        after = sample_processes([chroma.pid])[str(chroma.pid)]
        disk_mb = sum(f.stat().st_size for f in (tmp / "db").rglob("*") if f.is_file()) / 2**20
    finally:
        chroma.stop()
    per_100k = (after["rss_mb"] - before["rss_mb"]) * 100_000 / chunks
    return {"chunks": chunks, "rss_before_mb": before["rss_mb"], "rss_after_mb": after["rss_mb"],
            "rss_mb_per_100k_chunks": round(per_100k, 1), "disk_mb": round(disk_mb, 1),
            "disk_mb_per_100k_chunks": round(disk_mb * 100_000 / chunks, 1), "load_s": round(load_s, 1),
            "query_top20_ms": round(query_ms, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=1800.0, help="Seconds of load (default 30 min).")
    parser.add_argument("--warmup", type=float, default=60.0, help="Growth is measured after this many seconds.")
    parser.add_argument("--interval", type=float, default=15.0, help="Seconds between samples.")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--model-delay", type=float, default=0.05, help="The stub model's reply time (s).")
    parser.add_argument("--chroma-memory", type=int, default=0, metavar="CHUNKS",
                        help="Instead of soaking: measure Chroma's RSS and disk for this many chunks.")
    args = parser.parse_args()
    if args.chroma_memory:
        result: dict[str, Any] = {"benchmark": "chroma_memory", **chroma_memory(args.chroma_memory)}
        print(json.dumps(result, indent=2))
    else:
        base = os.environ.get("BOTKIT_BENCH_POSTGRES_URL") or os.environ.get("BOTKIT_TEST_POSTGRES_URL") \
            or "postgresql://postgres@127.0.0.1:5432/postgres"
        with scratch_database(base, prefix="botkit_soak") as database_url:
            result = {"benchmark": "bench_soak", "args": vars(args), **asyncio.run(soak(args, database_url))}
        growth = result["after_warmup"]["growth"]
        print()
        print(table(["worker", "RSS growth MB", "MB/min", "fd growth", "thread growth"],
                    [[pid, g["rss_mb"], result["after_warmup"]["rss_mb_per_minute"][pid], g["fds"], g["threads"]]
                     for pid, g in growth.items()]))
        print(f"turns {result['turns']}, errors {result['errors']}, p99 first/last interval "
              f"{result['p99_ms_first_last']} ms, max PostgreSQL connections {result['pg_connections_max']}, "
              f"Chroma RSS {result['after_warmup']['chroma_rss_mb']} MB, startup {result['startup_s']} s")
    result["machine"] = machine()
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{result['benchmark']}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
