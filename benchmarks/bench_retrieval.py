"""Retrieval latency at 100k chunks: vector-only and hybrid, with and without query embedding.

The index holds ``--n`` synthetic chunks: random unit vectors of dimension 384 in Chroma
(embedded PersistentClient, cosine HNSW) and synthetic text in the SQLite FTS5 table.
The text is drawn from a 20 000-word pseudo-vocabulary with Zipf frequencies; queries use
4–6 words of middling frequency (ranks 100–5000), as user questions do once stop words
are dropped. Query vectors are random unit vectors (the worst case for HNSW).

Measured through :class:`knowledge.retriever.Retriever` (k=5, threshold 0 so that every
candidate is turned into a passage):

* search time excluding query embedding (``retrieve_by_vector``): p50/p99, targets
  p50 <= 5 ms, p99 <= 20 ms, for vector-only and hybrid (vector + BM25 + RRF);
* end to end, including embedding the query with the real model (``retrieve``): p50,
  target <= 30 ms.

    .venv/bin/python benchmarks/bench_retrieval.py [--n 100000] [--queries 300] [--budget-s 240]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from _util import percentile, table, write_results

from knowledge.embeddings import Embedder, load_embedder
from knowledge.lexical import LexicalIndex
from knowledge.retriever import Retriever
from knowledge.settings import KnowledgeSettings
from knowledge.store import VectorStore
from knowledge.types import Chunk

DIM = 384
SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "be", "da", "fi", "go", "hu", "ja", "ke", "pa", "qu", "ze"]


def vocabulary(rng: np.random.Generator, size: int = 20_000) -> list[str]:
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(SYLLABLES, size=int(rng.integers(2, 5)))))
    return sorted(words)


def build(folder: Path, n: int, batch: int, rng: np.random.Generator, budget_s: float) -> tuple[VectorStore, LexicalIndex, list[str], dict]:
    words = vocabulary(rng)
    weights = 1.0 / np.arange(1, len(words) + 1) ** 1.1
    weights /= weights.sum()
    store = VectorStore.open(model_id="all-MiniLM-L6-v2", dimension=DIM, path=folder / "chroma", collection="bench")
    lexical = LexicalIndex(folder / "lexical.db")
    started = time.perf_counter()
    vector_s = lexical_s = 0.0
    built = 0
    for start in range(0, n, batch):
        size = min(batch, n - start)
        picks = rng.choice(len(words), size=(size, 80), p=weights)
        chunks = [
            Chunk(id=f"c{start + i}", source=f"doc{(start + i) // 8}.md", origin=f"doc{(start + i) // 8}.md",
                  title=" ".join(words[w] for w in picks[i, :4]), section="", text=" ".join(words[w] for w in picks[i]),
                  embed_text="", ordinal=(start + i) % 8)
            for i in range(size)
        ]
        vectors = rng.normal(size=(size, DIM)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        t = time.perf_counter()
        store.upsert(chunks, vectors)
        vector_s += time.perf_counter() - t
        t = time.perf_counter()
        lexical.replace(chunks)
        lexical_s += time.perf_counter() - t
        built += size
        print(f"  built {built}/{n} chunks ({time.perf_counter() - started:.0f}s)", flush=True)
        if time.perf_counter() - started > budget_s:
            print(f"  build budget of {budget_s:.0f}s spent: measuring at {built} chunks", flush=True)
            break
    stats = {"chunks": built, "build_seconds": time.perf_counter() - started, "chroma_seconds": vector_s,
             "fts_seconds": lexical_s}
    return store, lexical, words, stats


class NoModel(Embedder):
    """Stands in for the model with --no-model (search timings only)."""

    model_id = "all-MiniLM-L6-v2"
    dimension = DIM
    device = "none"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        raise RuntimeError("--no-model: no query embedding")


def timed(fn, count: int) -> list[float]:  # type: ignore[no-untyped-def]
    samples = []
    for i in range(count):
        started = time.perf_counter()
        fn(i)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--e2e-queries", type=int, default=100)
    parser.add_argument("--budget-s", type=float, default=240.0, help="stop building after this long")
    parser.add_argument("--device", default=None)
    parser.add_argument("--no-model", action="store_true", help="search timings only (no embedding model needed)")
    args = parser.parse_args()

    rng = np.random.default_rng(42)
    embedder = NoModel() if args.no_model else load_embedder(device=args.device)
    settings = KnowledgeSettings(top_k=5, score_threshold=0.0)
    with tempfile.TemporaryDirectory(prefix="bench-retrieval-") as tmp:
        store, lexical, words, build_stats = build(Path(tmp), args.n, args.batch, rng, args.budget_s)
        retriever = Retriever(store=store, lexical=lexical, embedder=embedder, settings=settings)
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
        for mode in ("vector", "lexical", "hybrid"):
            samples = timed(lambda i, m=mode: retriever.retrieve_by_vector(vectors[i], query_text=texts[i], mode=m),
                            args.queries)
            results[mode] = {"p50_ms": percentile(samples, 50), "p99_ms": percentile(samples, 99),
                             "mean_ms": float(np.mean(samples))}
            rows.append([f"{mode} (search only)", len(samples), results[mode]["p50_ms"], results[mode]["p99_ms"],
                         "p50 <= 5, p99 <= 20" if mode != "lexical" else "-"])
        if not args.no_model:
            embed_samples = timed(lambda i: embedder.embed_query(texts[i]), args.e2e_queries)
            results["embed_query"] = {"p50_ms": percentile(embed_samples, 50), "p99_ms": percentile(embed_samples, 99)}
            rows.append(["query embedding only", len(embed_samples), results["embed_query"]["p50_ms"],
                         results["embed_query"]["p99_ms"], "-"])
        for mode in ("vector", "hybrid") if not args.no_model else ():
            samples = timed(lambda i, m=mode: retriever.retrieve(texts[i], mode=m), args.e2e_queries)
            results[f"{mode}_end_to_end"] = {"p50_ms": percentile(samples, 50), "p99_ms": percentile(samples, 99)}
            rows.append([f"{mode} end to end", len(samples), percentile(samples, 50), percentile(samples, 99),
                         "p50 <= 30"])

    print()
    print(f"Retrieval latency, {build_stats['chunks']} chunks (built in {build_stats['build_seconds']:.0f}s: "
          f"Chroma {build_stats['chroma_seconds']:.0f}s, FTS5 {build_stats['fts_seconds']:.0f}s), "
          f"embedding on {embedder.device}, k=5:")
    print(table(["measure", "queries", "p50 ms", "p99 ms", "target"], rows))
    path = write_results("bench_retrieval", {"build": build_stats, "device": embedder.device, "results": results})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
