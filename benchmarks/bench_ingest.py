"""Ingestion throughput: the whole pipeline vs raw ``SentenceTransformer.encode``.

For each corpus, in the same process and with the same batch size, alternately:

* raw:      ``model.encode(texts)`` of the chunks' ``embed_text`` (the texts are prepared
            beforehand and not timed), sentence-transformers on torch;
* runtime:  the same texts through the embedder's own ``embed``, on the runtime the
            pipeline embeds with (``knowledge.ingest_runtime``: ONNX Runtime on CPU by
            default, vectors within 1e-4 of torch's);
* pipeline: ``knowledge.ingest.sync(..., rebuild=True)``: discover, read, parse, chunk,
            embed, write Chroma + FTS5 + manifest.

Throughput is chunks per second (best of ``--repeats``); the target is pipeline / raw
>= 0.85. pipeline / runtime is what the rest of the pipeline costs around its own
embedding (1.0: nothing). Corpora: the faq-agent knowledge base, and the same text
replicated ``--copies`` times under other names (a larger corpus, so fixed costs weigh less).

    .venv/bin/python benchmarks/bench_ingest.py [--copies 10] [--repeats 2] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from _util import EXAMPLE_BOT, table, write_results

from knowledge.chunking import chunk_documents
from knowledge.embeddings import load_embedder
from knowledge.ingest import sync
from knowledge.settings import KnowledgeSettings
from knowledge.sources import discover, parse, read


def make_corpus(target: Path, copies: int) -> Path:
    """A bot folder whose knowledge/ holds the example knowledge base ``copies`` times."""
    source = EXAMPLE_BOT / "knowledge"
    if copies == 1:
        shutil.copytree(source, target / "knowledge")
    else:
        for i in range(copies):
            shutil.copytree(source, target / "knowledge" / f"copy-{i:02d}")
    return target


def chunk_texts(bot: Path, settings: KnowledgeSettings) -> list[str]:
    refs, _ = discover(settings, bot)
    texts: list[str] = []
    for ref in refs:
        try:
            documents = parse(read(ref, settings))
        except Exception:  # noqa: BLE001 - the pipeline reports these too
            continue
        texts += [c.embed_text for c in chunk_documents(documents, chunk_size=settings.chunk_size,
                                                        chunk_overlap=settings.chunk_overlap)]
    return texts


def run(name: str, bot: Path, settings: KnowledgeSettings, embedder, repeats: int) -> dict:  # type: ignore[no-untyped-def]
    texts = chunk_texts(bot, settings)
    raw_s: list[float] = []
    own_s: list[float] = []
    pipe_s: list[float] = []
    chunks = 0
    for _ in range(repeats):
        started = time.perf_counter()
        embedder.model.encode(texts, batch_size=settings.embedding_batch_size, normalize_embeddings=True,
                              convert_to_numpy=True, show_progress_bar=False)
        raw_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        embedder.embed(texts)
        own_s.append(time.perf_counter() - started)
        report = sync(settings, bot, bot / "data", embedder=embedder, rebuild=True)
        pipe_s.append(report.seconds)
        chunks = report.chunks
        assert report.embedded == len(texts) == chunks, (report.embedded, len(texts), chunks)
    raw_cps, own_cps, pipe_cps = len(texts) / min(raw_s), len(texts) / min(own_s), chunks / min(pipe_s)
    result = {
        "corpus": name, "chunks": chunks, "batch_size": settings.embedding_batch_size,
        "ingest_runtime": embedder.ingest_runtime,
        "raw_seconds": raw_s, "runtime_seconds": own_s, "pipeline_seconds": pipe_s,
        "raw_chunks_per_s": raw_cps, "runtime_chunks_per_s": own_cps, "pipeline_chunks_per_s": pipe_cps,
        "ratio": pipe_cps / raw_cps,
        "ratio_median": (chunks / statistics.median(pipe_s)) / (len(texts) / statistics.median(raw_s)),
        "ratio_to_runtime": pipe_cps / own_cps,
    }
    print(f"  {name}: {chunks} chunks, raw {min(raw_s):.1f}s, runtime {min(own_s):.1f}s, pipeline {min(pipe_s):.1f}s, "
          f"ratio {result['ratio']:.3f}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=10, help="replicas of the example KB in the large corpus (0: skip)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=KnowledgeSettings().embedding_batch_size)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()

    settings = KnowledgeSettings(embedding_batch_size=args.batch_size)
    embedder = load_embedder(device=args.device, batch_size=args.batch_size)
    embedder.embed(["warm-up"] * args.batch_size)
    embedder.model.encode(["warm-up"] * args.batch_size, batch_size=args.batch_size)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        results.append(run("faq-agent", make_corpus(Path(tmp) / "small", 1), settings, embedder, args.repeats))
        if args.copies > 1:
            large = make_corpus(Path(tmp) / "large", args.copies)
            results.append(run(f"faq-agent x{args.copies}", large, settings, embedder, args.repeats))

    print()
    print(f"Ingestion throughput (device {embedder.device}, batch size {args.batch_size}, best of {args.repeats}; "
          f"the pipeline embeds on {results[0]['ingest_runtime']}):")
    print(table(
        ["corpus", "chunks", "raw encode chunks/s", "runtime chunks/s", "pipeline chunks/s", "ratio (best)",
         "ratio (median)", "target", "pipeline / runtime"],
        [[r["corpus"], r["chunks"], r["raw_chunks_per_s"], r["runtime_chunks_per_s"], r["pipeline_chunks_per_s"],
          r["ratio"], r["ratio_median"], ">= 0.85", r["ratio_to_runtime"]] for r in results],
    ))
    print("ratio: pipeline / raw sentence-transformers encode (torch); pipeline / runtime: the pipeline against its "
          "own embedding of the same texts (what reading, chunking and writing add).")
    path = write_results("bench_ingest", {"device": embedder.device, "results": results})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
