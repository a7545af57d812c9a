"""Retrieval quality on examples/faq-agent/questions.jsonl: hybrid vs vector-only vs lexical.

Hybrid is measured with the default settings, as ``hybrid-relative`` with relative score
fusion (``knowledge.fusion: relative``), and as ``hybrid-whole`` with each question embedded
whole only (``knowledge.query_sentences: false``). ``--questions`` and ``--knowledge`` run it
on another set, such as the held-out ones beside the calibration corpus
(``benchmarks/calibration/multi_sentence.jsonl``, ``benchmarks/answer_quality_dev``).

hit@1/3/5 and MRR (cut-off 5) per question kind and overall, over the questions with
expected sources, using the history-aware query (:func:`knowledge.query.contextualize`).
Three relevance settings: the default (what the bot does: the best passage must reach
``knowledge.score_threshold``, the others ``knowledge.passage_threshold``; a relevant
passage dropped counts as a miss), the per-passage threshold (every passage must reach
``score_threshold`` on its own, the behaviour before ``passage_threshold``), and
threshold 0 (ranking quality alone). For the questions with no expected source, the share
that retrieve nothing is reported too (what the threshold is for). Targets: hit@3 >= 0.9
overall, and hybrid >= vector-only. Nothing here is tuned to this question set.

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
from knowledge.query import contextualize
from knowledge.settings import KnowledgeSettings

MODES = ("hybrid", "hybrid-relative", "hybrid-whole", "vector", "lexical")
# Variants of the default hybrid search, by their settings: hybrid-relative uses relative score
# fusion; hybrid-whole embeds a message of several sentences whole only (knowledge.query_sentences off).
VARIANTS = {"hybrid-relative": {"fusion": "relative"}, "hybrid-whole": {"query_sentences": False}}


def query(line: dict) -> str:
    """What the bot retrieves with for a question-set line: the history-aware query."""
    return contextualize(line["question"], line.get("history") or [])


def _mode(name: str) -> str:
    return name.split("-", 1)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--questions", type=Path, default=EXAMPLE_BOT / "questions.jsonl")
    parser.add_argument("--knowledge", type=Path, default=EXAMPLE_BOT / "knowledge",
                        help="the knowledge folder the questions are about (held-out sets: benchmarks/calibration/knowledge)")
    parser.add_argument("--device", default=None)
    args = parser.parse_args()

    import json

    questions = load_questions(args.questions)
    lines = [json.loads(line) for line in args.questions.read_text(encoding="utf-8").splitlines() if line.strip()]
    unanswerable = [line for line in lines if not line.get("expected_sources")]
    settings = KnowledgeSettings()
    settings_by_name = {
        "default": (settings.score_threshold, settings.passage_threshold),
        "per-passage threshold": (settings.score_threshold, settings.score_threshold),
        "ranking only": (0.0, 0.0),
    }
    settings_list = list(settings_by_name)
    embedder = load_embedder(settings.embedding_model, device=args.device)
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as tmp:
        bot = Path(tmp)
        shutil.copytree(args.knowledge, bot / "knowledge")
        kb = KnowledgeBase.open(settings, bot, bot / "data", embedder=embedder)
        report = kb.ingest()
        print(f"ingested {report.chunks} chunks from {report.added} sources ({len(report.failed)} failed) "
              f"in {report.seconds:.0f}s", flush=True)
        results: dict = {}
        rejection: dict = {}
        for setting in settings_list:
            threshold, passage = settings_by_name[setting]
            for mode in MODES:
                kb.retriever.settings = settings.model_copy(update=VARIANTS.get(mode, {}))
                overall, by_kind = evaluate(
                    lambda q, m=_mode(mode), t=threshold, g=passage: kb.retriever.retrieve(
                        q.query, k=args.k, mode=m, threshold=t, passage_threshold=g, message=q.question),
                    questions,
                )
                results[(setting, mode)] = {
                    "overall": overall.to_dict(), "by_kind": {k: v.to_dict() for k, v in by_kind.items()},
                    "misses_at_3": sorted(q for q, r in overall.ranks.items() if r is None or r > 3),
                }
            for mode in MODES:
                kb.retriever.settings = settings.model_copy(update=VARIANTS.get(mode, {}))
                empty: dict[str, list[int]] = {}
                for line in unanswerable:
                    got = kb.retriever.retrieve(query(line), k=args.k, mode=_mode(mode), threshold=threshold,
                                                passage_threshold=passage, message=line["question"])
                    empty.setdefault(line.get("kind", "-"), []).append(int(not got))
                rejection[(setting, mode)] = {kind: sum(v) / len(v) for kind, v in sorted(empty.items())}
        kb.close()

    kinds = list(results[(settings_list[0], "hybrid")]["by_kind"])
    for setting in settings_list:
        threshold, passage = settings_by_name[setting]
        rows = []
        for kind in [*kinds, "all"]:
            for mode in MODES:
                r = results[(setting, mode)]
                m = r["overall"] if kind == "all" else r["by_kind"][kind]
                rows.append([kind if mode == "hybrid" else "", mode, m["n"], m["hit@1"], m["hit@3"], m["hit@5"], m["mrr"]])
        print()
        print(f"Retrieval quality on {args.questions.name} ({len(questions)} questions with expected sources, "
              f"k={args.k}, {setting}: score threshold {threshold}, passage threshold {passage}):")
        print(table(["kind", "mode", "n", "hit@1", "hit@3", "hit@5", "mrr"], rows))
        for mode in MODES:
            print(f"  {mode} misses at 3: {', '.join(results[(setting, mode)]['misses_at_3']) or '-'}")
        hybrid, vector = results[(setting, "hybrid")]["overall"], results[(setting, "vector")]["overall"]
        print(f"  targets: hybrid hit@3 {hybrid['hit@3']:.3f} (>= 0.9: {'met' if hybrid['hit@3'] >= 0.9 else 'NOT met'}); "
              "hybrid >= vector-only (hit@3 and MRR): "
              f"{'met' if hybrid['hit@3'] >= vector['hit@3'] and hybrid['mrr'] >= vector['mrr'] else 'NOT met'}")
        print("  questions without expected sources that retrieve nothing: " + "; ".join(
            f"{mode}: " + ", ".join(f"{kind} {share:.2f}" for kind, share in rejection[(setting, mode)].items())
            for mode in MODES))
    payload = {
        setting: {"threshold": settings_by_name[setting][0], "passage_threshold": settings_by_name[setting][1]} | {
            mode: results[(setting, mode)] | {"empty_when_unanswerable": rejection[(setting, mode)]} for mode in MODES}
        for setting in settings_list
    }
    path = write_results("bench_quality", {"k": args.k, "questions": len(questions), "results": payload})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
