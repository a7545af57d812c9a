"""Retrieval latency at 100k chunks: vector-only and hybrid, with and without query embedding.

The index holds ``--n`` synthetic chunks: random unit vectors of dimension 384 in Chroma
(embedded PersistentClient, cosine HNSW) and synthetic text in the SQLite FTS5 table.
The text is drawn from a 20 000-word pseudo-vocabulary with Zipf frequencies; queries use
4–6 words of middling frequency (ranks 100–5000), as user questions do once stop words
are dropped. Query vectors are random unit vectors (the worst case for HNSW).

Measured through :class:`knowledge.retriever.Retriever` (k=5, threshold 0 so that every
candidate is turned into a passage):

* search time excluding query embedding (``retrieve_by_vector``): p50/p99, targets
  p50 <= 5 ms, p99 <= 20 ms, for vector-only and hybrid (vector + BM25 + RRF; the Chroma
  query runs on a worker thread beside the BM25 query, and is also timed without that);
* each step of a hybrid search timed on its own, one after the other (Chroma query, BM25
  query, committed-ids filter, reading the winners), to see where the time goes;
* end to end, including embedding the query with the real model (``retrieve``): p50,
  target <= 30 ms;
* next to each wall-clock p50, the p50 of the process's CPU time per query: on a busy
  machine the wall clock mostly measures the wait for a core; the CPU time leaves that
  out (it still grows under contention, less).

The index is built once and cached (``--cache-dir``, default ``$TMPDIR/botkit-bench-retrieval``,
one folder per ``--n``/``--seed``/chromadb version); a run builds for at most ``--budget-s``
seconds, measures what it has (marked PARTIAL) and the next run resumes the build. A 100k
build takes about 5 minutes on 2 busy cores; a rerun with the cache takes about a minute.
Record the machine's load: the figures are only comparable on a quiet machine.

    flock /tmp/botkit-bench.lock .venv/bin/python benchmarks/bench_retrieval.py \
        [--n 100000] [--queries 300] [--budget-s 180] [--no-model] [--fresh]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from _util import percentile, table, write_results

from knowledge.embeddings import Embedder, load_embedder
from knowledge.lexical import LexicalIndex
from knowledge.retriever import Retriever, _fuse
from knowledge.settings import KnowledgeSettings
from knowledge.store import VectorStore
from knowledge.types import Chunk

DIM = 384
SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "be", "da", "fi", "go", "hu", "ja", "ke", "pa", "qu", "ze"]


CACHE_VERSION = 4  # bump when the synthetic corpus or the index layout changes


def vocabulary(seed: int, size: int = 20_000) -> list[str]:
    rng = np.random.default_rng([seed, 0])
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(SYLLABLES, size=int(rng.integers(2, 5)))))
    return sorted(words)


def synthetic_batch(words: list[str], seed: int, start: int, size: int) -> tuple[list[Chunk], np.ndarray]:
    """Chunks ``start .. start+size`` and their unit vectors: the same for the same seed, whatever the run."""
    rng = np.random.default_rng([seed, 1, start])
    weights = 1.0 / np.arange(1, len(words) + 1) ** 1.1
    weights /= weights.sum()
    picks = rng.choice(len(words), size=(size, 80), p=weights)
    chunks = [
        Chunk(id=f"c{start + i}", source=f"doc{(start + i) // 8}.md", origin=f"doc{(start + i) // 8}.md",
              title=" ".join(words[w] for w in picks[i, :4]), section="", text=" ".join(words[w] for w in picks[i]),
              embed_text="", ordinal=(start + i) % 8)
        for i in range(size)
    ]
    vectors = rng.normal(size=(size, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return chunks, vectors


def cache_folder(root: Path, n: int, seed: int) -> Path:
    """The cached index for these parameters (reused, and resumed when a build was cut short)."""
    import chromadb

    return root / f"n{n}-seed{seed}-dim{DIM}-v{CACHE_VERSION}-chromadb{chromadb.__version__}"


def build(folder: Path, n: int, batch: int, seed: int, budget_s: float) -> tuple[VectorStore, LexicalIndex, list[str], dict]:
    """Open the cached index in ``folder`` and add chunks until it holds ``n`` or ``budget_s`` is spent.

    Progress is recorded after each batch is in both indexes; a build cut short (budget,
    Ctrl-C, crash) resumes at the recorded count on the next run (writes are upserts, so a
    half-written batch is simply written again).
    """
    words = vocabulary(seed)
    folder.mkdir(parents=True, exist_ok=True)
    progress_file = folder / "progress.json"
    progress = json.loads(progress_file.read_text()) if progress_file.exists() else {
        "chunks": 0, "build_seconds": 0.0, "chroma_seconds": 0.0, "fts_seconds": 0.0}
    store = VectorStore.open(model_id="all-MiniLM-L6-v2", dimension=DIM, path=folder / "chroma", collection="bench")
    lexical = LexicalIndex(folder / "lexical.db")
    if progress["chunks"]:
        print(f"  reusing the cached index in {folder}: {progress['chunks']} of {n} chunks", flush=True)
    started = time.perf_counter()
    while progress["chunks"] < n:
        if time.perf_counter() - started > budget_s:
            print(f"  build budget of {budget_s:.0f}s spent at {progress['chunks']} chunks: measuring this partial "
                  "index; run again to continue the build (it is cached)", flush=True)
            break
        start = progress["chunks"]
        chunks, vectors = synthetic_batch(words, seed, start, min(batch, n - start))
        t = time.perf_counter()
        store.upsert(chunks, vectors)
        progress["chroma_seconds"] += time.perf_counter() - t
        t = time.perf_counter()
        lexical.replace(chunks, vectors=vectors)  # one transaction per batch, as ingestion writes them
        progress["fts_seconds"] += time.perf_counter() - t
        progress["chunks"] = start + len(chunks)
        progress["build_seconds"] = progress["chroma_seconds"] + progress["fts_seconds"]
        progress_file.write_text(json.dumps(progress))
        print(f"  built {progress['chunks']}/{n} chunks ({time.perf_counter() - started:.0f}s this run)", flush=True)
        if progress["chunks"] >= n:
            lexical.optimize()  # as ingestion does at the end of a run
    return store, lexical, words, dict(progress)


class NoModel(Embedder):
    """Stands in for the model with --no-model (search timings only)."""

    model_id = "all-MiniLM-L6-v2"
    dimension = DIM
    device = "none"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        raise RuntimeError("--no-model: no query embedding")


def timed(fn, count: int) -> tuple[list[float], list[float]]:  # type: ignore[no-untyped-def]
    """Wall-clock and CPU milliseconds (this process, all its threads) of ``fn(i)`` for each i."""
    wall, cpu = [], []
    for i in range(count):
        started, started_cpu = time.perf_counter(), time.process_time()
        fn(i)
        wall.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
    return wall, cpu


def parts(retriever: Retriever, vectors: np.ndarray, texts: list[str], count: int) -> dict[str, list[float]]:
    """Each step of a hybrid search timed on its own (same calls as the retriever makes)."""
    store, lexical, k = retriever.store, retriever.lexical, 5
    depth = max(4 * k, 20)
    out: dict[str, list[float]] = {"vector query": [], "fts query": [], "committed filter": [], "read winners": []}
    for i in range(count):
        t0 = time.perf_counter()
        hits = store.query(vectors[i], k=depth, with_data=False)
        t1 = time.perf_counter()
        lex = lexical.search(texts[i], k=depth)
        t2 = time.perf_counter()
        order = _fuse({h.id: float(h.similarity or 0.0) for h in hits}, {h.chunk_id: h.score for h in lex}, "hybrid",
                      fusion=retriever.settings.fusion, vector_weight=retriever.settings.vector_weight)
        order = lexical.committed(order)
        t3 = time.perf_counter()
        retriever._read(order[: 2 * k], {h.id: float(h.similarity or 0.0) for h in hits})  # as _search reads a page
        t4 = time.perf_counter()
        for name, a, b in (("vector query", t0, t1), ("fts query", t1, t2), ("committed filter", t2, t3),
                           ("read winners", t3, t4)):
            out[name].append((b - a) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--e2e-queries", type=int, default=100)
    parser.add_argument("--budget-s", type=float, default=180.0,
                        help="build for at most this long per run, then measure (the build resumes on the next run)")
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "botkit-bench-retrieval",
                        help="where the built index is kept between runs")
    parser.add_argument("--fresh", action="store_true", help="delete the cached index for these parameters first")
    parser.add_argument("--device", default=None)
    parser.add_argument("--no-model", action="store_true", help="search timings only (no embedding model needed)")
    args = parser.parse_args()

    load = os.getloadavg()
    print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} ({os.cpu_count()} CPUs)", flush=True)
    folder = cache_folder(args.cache_dir, args.n, args.seed)
    if args.fresh and folder.exists():
        shutil.rmtree(folder)
    embedder = NoModel() if args.no_model else load_embedder(device=args.device)
    # No query-vector cache: the end-to-end rows reuse the warm-up's texts, and each must pay for its embedding.
    settings = KnowledgeSettings(top_k=5, score_threshold=0.0, query_cache_size=0)
    store, lexical, words, build_stats = build(folder, args.n, args.batch, args.seed, args.budget_s)
    retriever = Retriever(store=store, lexical=lexical, embedder=embedder, settings=settings)
    rng = np.random.default_rng([args.seed, 2])
    middling = words[100:5000]
    texts = [" ".join(rng.choice(middling, size=int(rng.integers(4, 7)))) for _ in range(args.queries)]
    vectors = rng.normal(size=(args.queries, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    warm = min(20, args.queries)
    for i in range(warm):  # warm caches (HNSW pages, FTS pages, model)
        retriever.retrieve_by_vector(vectors[i], query_text=texts[i], mode="hybrid")
        if not args.no_model:
            retriever.retrieve(texts[i])

    rows = []
    results: dict[str, dict[str, float]] = {}
    sequential = Retriever(store=store, lexical=lexical, embedder=embedder, settings=settings, search_workers=0)
    searchers = {"vector": [retriever], "lexical": [retriever], "hybrid": [retriever, sequential]}
    measured: dict[str, tuple[list[float], list[float]]] = {}
    for mode, variants in searchers.items():
        # The two hybrid variants alternate query by query, so a change of load hits both alike.
        both = [timed(lambda _, q=q, m=mode, r=r: r.retrieve_by_vector(vectors[q], query_text=texts[q], mode=m), 1)
                for q in range(args.queries) for r in variants]
        for offset, name in enumerate([mode] + (["hybrid, not overlapped"] if len(variants) > 1 else [])):
            picked = both[offset :: len(variants)]
            measured[name] = ([w for wall, _ in picked for w in wall], [c for _, cpu in picked for c in cpu])
    for mode, (samples, cpu) in measured.items():
        results[mode] = {"p50_ms": percentile(samples, 50), "p99_ms": percentile(samples, 99),
                         "mean_ms": float(np.mean(samples)), "cpu_p50_ms": percentile(cpu, 50)}
        rows.append([f"{mode} (search only)", len(samples), results[mode]["p50_ms"], results[mode]["p99_ms"],
                     percentile(cpu, 50), "p50 <= 5, p99 <= 20" if mode in ("vector", "hybrid") else "-"])
    for name, samples in parts(retriever, vectors, texts, args.queries).items():
        results[f"part: {name}"] = {"p50_ms": percentile(samples, 50), "p99_ms": percentile(samples, 99)}
        rows.append([f"  part, sequential: {name}", len(samples), percentile(samples, 50), percentile(samples, 99),
                     "-", "-"])
    if not args.no_model:
        embed_samples, cpu = timed(lambda i: embedder.embed_query(texts[i]), args.e2e_queries)
        results["embed_query"] = {"p50_ms": percentile(embed_samples, 50), "p99_ms": percentile(embed_samples, 99),
                                  "cpu_p50_ms": percentile(cpu, 50)}
        rows.append(["query embedding only", len(embed_samples), results["embed_query"]["p50_ms"],
                     results["embed_query"]["p99_ms"], percentile(cpu, 50), "-"])
    for mode in ("vector", "hybrid") if not args.no_model else ():
        samples, cpu = timed(lambda i, m=mode: retriever.retrieve(texts[i], mode=m), args.e2e_queries)
        results[f"{mode}_end_to_end"] = {"p50_ms": percentile(samples, 50), "p99_ms": percentile(samples, 99),
                                         "cpu_p50_ms": percentile(cpu, 50)}
        rows.append([f"{mode} end to end", len(samples), percentile(samples, 50), percentile(samples, 99),
                     percentile(cpu, 50), "p50 <= 30"])
    lexical.close()

    load = os.getloadavg()
    partial = "" if build_stats["chunks"] >= args.n else f" (PARTIAL: {args.n} wanted; run again to finish the build)"
    print()
    print(f"Retrieval latency, {build_stats['chunks']} chunks{partial}, index built in "
          f"{build_stats['build_seconds']:.0f}s over all runs (Chroma {build_stats['chroma_seconds']:.0f}s, "
          f"FTS5 {build_stats['fts_seconds']:.0f}s), cached in {folder}; embedding on {embedder.device}, k=5; "
          f"load average at end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} ({os.cpu_count()} CPUs):")
    print(table(["measure", "queries", "p50 ms", "p99 ms", "CPU p50 ms", "target"], rows))
    print("CPU ms: this process's CPU time per query, all threads. Less sensitive to load than the wall clock (it "
          "leaves out the wait for a core) but not immune (shared caches, SMT siblings): compare runs at similar load. "
          "An overlapped search's wall time can be below its CPU time; the query model may use several threads.")
    path = write_results("bench_retrieval", {"build": build_stats, "device": embedder.device, "results": results,
                                             "complete": not partial})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
