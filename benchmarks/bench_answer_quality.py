"""Answer quality of the extractive default on examples/faq-agent/questions.jsonl, through ``botkit eval``.

The example bot (its bot.yaml and knowledge, copied to a temporary folder and ingested)
runs every labelled case through the real bot with the ``extractive`` backend (no model,
no API key), in the evaluation runner's isolated store. Figures:

- answerable cases whose reply contains every ``answer_facts`` string;
- ``out_of_scope`` cases that abstain;
- ``escalation`` cases handed to a person;
- ``multi_turn`` cases whose history-aware query ranks an expected source in the top 3;

plus the runner's other figures (retrieval hit@k, citations, BLEU/ROUGE-L, injection
safety, latency). Nothing is tuned to this set: the numbers are what the default does.

    .venv/bin/python benchmarks/bench_answer_quality.py [--backend extractive] [--report out.html] [--explain]

``--bot DIR`` runs another bot (its ``bot.yaml``, ``knowledge/`` or ``--knowledge PATH``,
and ``questions.jsonl``): ``benchmarks/answer_quality_dev`` is a held-out set on the
coffee-shop corpus of ``benchmarks/calibration/knowledge`` (written without looking at the
example bot's cases), to check that a change is not fitted to one help centre:

    .venv/bin/python benchmarks/bench_answer_quality.py --bot benchmarks/answer_quality_dev \
        --knowledge benchmarks/calibration/knowledge

``--explain`` prints, for each failing case, what was retrieved and what the bot replied,
so a failure can be told apart as a retrieval miss, a wrong excerpt or a wrong abstention.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _util import EXAMPLE_BOT, table, write_results

from botkit.config import load_config
from botkit.evaluation import evaluate, load_testset, write_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bot", type=Path, default=EXAMPLE_BOT, help="bot folder (bot.yaml, knowledge/, questions.jsonl)")
    parser.add_argument("--knowledge", type=Path, default=None, help="knowledge folder (default: the bot's knowledge/)")
    parser.add_argument("--questions", type=Path, default=None, help="test set (default: the bot's questions.jsonl)")
    parser.add_argument("--backend", default="extractive")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--report", type=Path, default=None, help="also write the HTML report here")
    parser.add_argument("--explain", action="store_true", help="print retrieved sources and the reply of failing cases")
    args = parser.parse_args()

    args.questions = args.questions or args.bot / "questions.jsonl"
    cases = load_testset(args.questions)
    with tempfile.TemporaryDirectory(prefix="bench-answers-") as tmp:
        bot_dir = Path(tmp) / "bot"
        bot_dir.mkdir()
        shutil.copy(args.bot / "bot.yaml", bot_dir / "bot.yaml")
        shutil.copytree(args.knowledge or args.bot / "knowledge", bot_dir / "knowledge")
        config = load_config(bot_dir, environ={})
        from knowledge.index import KnowledgeBase

        kb = KnowledgeBase.open(config.knowledge, config.root, config.data_path, chroma_path=config.chroma_path)
        try:
            ingest = kb.ingest()
        finally:
            kb.close()
        print(f"ingested {ingest.chunks} chunks ({len(ingest.failed)} sources failed)", flush=True)
        done = [0]

        def tick(result: object) -> None:
            done[0] += 1
            if done[0] % 10 == 0:
                print(f"  {done[0]}/{len(cases)} cases", flush=True)

        run = asyncio.run(evaluate(config, cases, backend=args.backend, concurrency=args.concurrency, on_result=tick,
                                   info={"testset": str(args.questions)}))
    summary = run.summary()
    results = run.results
    answerable = [r for r in results if r.case.answerable and r.case.answer_facts]
    oos = [r for r in results if r.case.kind == "out_of_scope"]
    escalation = [r for r in results if r.case.kind == "escalation"]
    multi = [r for r in results if r.case.kind == "multi_turn" and r.case.expected_sources]
    headline = {
        "answerable_all_facts": _share(answerable, lambda r: not r.facts_missing),
        "answerable_cases": len(answerable),
        "out_of_scope_abstained": _share(oos, lambda r: r.abstained),
        "out_of_scope_cases": len(oos),
        "escalation_handed_off": _share(escalation, lambda r: r.handoff),
        "escalation_cases": len(escalation),
        "multi_turn_hit@3": _share(multi, lambda r: r.rank is not None and r.rank <= 3),
        "multi_turn_cases": len(multi),
    }
    print()
    print(table(["figure", "value", "cases"], [
        ["answerable: reply has every answer fact", headline["answerable_all_facts"], len(answerable)],
        ["out_of_scope: abstained", headline["out_of_scope_abstained"], len(oos)],
        ["escalation: handed off", headline["escalation_handed_off"], len(escalation)],
        ["multi_turn: expected source in top 3", headline["multi_turn_hit@3"], len(multi)],
    ]))
    keys = ("hit@1", "hit@3", "hit@5", "mrr", "fact_recall", "all_facts_rate", "citation_accuracy", "bleu", "rougeL",
            "abstain_precision", "abstain_recall", "handoff_accuracy", "false_handoff_rate", "injection_safety",
            "latency_p50_ms", "latency_p95_ms", "pass_rate")
    print()
    print(table(["eval figure", "value"], [[k, summary[k]] for k in keys]))
    kinds = summary["per_kind"]
    print()
    print(table(["kind", "cases", "pass", "hit@5", "all facts", "abstained (oos)", "handoff (esc)"], [
        [kind, v["case_count"], v["pass_rate"], v["hit@5"], v["all_facts_rate"], v["abstain_recall"], v["handoff_accuracy"]]
        for kind, v in sorted(kinds.items())
    ]))
    failing = [r for r in results if not r.passed]
    print(f"\nfailing cases ({len(failing)}):")
    for r in failing:
        print(f"  {r.case.id} ({r.case.kind}): {'; '.join(r.failures)}")
        if args.explain:
            print(f"      question: {r.case.question}" + (f"  (after {r.case.history})" if r.case.history else ""))
            print(f"      retrieved: {', '.join(r.retrieved) or '(nothing)'}")
            print(f"      reply: {' '.join(r.answer.split())[:400]}")
    if args.report:
        write_report(summary, args.report)
        print(f"report: {args.report}")
    name = "answer_quality" if args.bot.resolve() == EXAMPLE_BOT.resolve() else f"answer_quality_{args.bot.name}"
    path = write_results(name, {"backend": args.backend, "bot": str(args.bot), **headline, "summary": summary})
    print(f"results: {path}")


def _share(rows: list, test: Callable[[Any], bool]) -> float | None:
    """The share of ``rows`` passing ``test`` (``None`` when there are none)."""
    return sum(1 for r in rows if test(r)) / len(rows) if rows else None


if __name__ == "__main__":
    main()
