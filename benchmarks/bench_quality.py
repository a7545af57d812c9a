"""Retrieval quality on examples/faq-agent/questions.jsonl: hybrid vs vector-only vs lexical.

hit@1/3/5 and MRR (cut-off 5) per question kind and overall, over the questions with
expected sources, using the history-aware query (:func:`knowledge.query.contextualize`)
and the default settings (score threshold included). Targets: hit@3 >= 0.9 overall, and
hybrid >= vector-only. Nothing here is tuned to this question set.

    .venv/bin/python benchmarks/bench_quality.py [--k 5] [--questions PATH]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from _util import EXAMPLE_BOT, table, write_results

from knowledge.embeddings import load_embedder
from knowledge.evaluation import evaluate, load_questions
from knowledge.index import KnowledgeBase
from knowledge.settings import KnowledgeSettings

MODES = ("hybrid", "vector", "lexical")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--questions", type=Path, default=EXAMPLE_BOT / "questions.jsonl")
    parser.add_argument("--device", default=None)
    args = parser.parse_args()

    questions = load_questions(args.questions)
    settings = KnowledgeSettings()
    embedder = load_embedder(settings.embedding_model, device=args.device)
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as tmp:
        bot = Path(tmp)
        shutil.copytree(EXAMPLE_BOT / "knowledge", bot / "knowledge")
        kb = KnowledgeBase.open(settings, bot, bot / "data", embedder=embedder)
        report = kb.ingest()
        print(f"ingested {report.chunks} chunks from {report.added} sources ({len(report.failed)} failed) "
              f"in {report.seconds:.0f}s", flush=True)
        vectors = embedder.embed([q.query for q in questions])
        by_query = {q.query: v for q, v in zip(questions, vectors)}
        results = {}
        for mode in MODES:
            overall, by_kind = evaluate(
                lambda q, m=mode: kb.retriever.retrieve_by_vector(by_query[q.query], query_text=q.query, k=args.k, mode=m),
                questions,
            )
            results[mode] = {"overall": overall.to_dict(), "by_kind": {k: v.to_dict() for k, v in by_kind.items()},
                             "misses_at_3": sorted(q for q, r in overall.ranks.items() if r is None or r > 3)}
        kb.close()

    kinds = list(results["hybrid"]["by_kind"])
    rows = []
    for kind in [*kinds, "all"]:
        for mode in MODES:
            m = results[mode]["overall"] if kind == "all" else results[mode]["by_kind"][kind]
            rows.append([kind if mode == "hybrid" else "", mode, m["n"], m["hit@1"], m["hit@3"], m["hit@5"], m["mrr"]])
    print()
    print(f"Retrieval quality on {args.questions.name} ({len(questions)} questions with expected sources, k={args.k}, "
          f"threshold {settings.score_threshold}):")
    print(table(["kind", "mode", "n", "hit@1", "hit@3", "hit@5", "mrr"], rows))
    for mode in MODES:
        print(f"{mode} misses at 3: {', '.join(results[mode]['misses_at_3']) or '-'}")
    hybrid, vector = results["hybrid"]["overall"], results["vector"]["overall"]
    print(f"\ntargets: hybrid hit@3 {hybrid['hit@3']:.3f} (>= 0.9: {'met' if hybrid['hit@3'] >= 0.9 else 'NOT met'}); "
          f"hybrid >= vector-only on hit@3 and MRR: "
          f"{'met' if hybrid['hit@3'] >= vector['hit@3'] and hybrid['mrr'] >= vector['mrr'] else 'NOT met'}")
    path = write_results("bench_quality", {"k": args.k, "questions": len(questions), "results": results})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
