"""Escalation classifiers compared on the same held-out split of examples/escalation/escalation.csv.

1. ``keyword``: botkit's explicit rules (``botkit.policy.wants_human`` or ``is_angry``),
   no training;
2. ``logreg-minilm``: logistic regression (scikit-learn) on frozen all-MiniLM-L6-v2
   sentence embeddings (sentence-transformers, the bundled weights);
3. ``fine-tuned``: ``botkit train-classifier`` (MiniLM encoder + new head, Trainer).

Figures: macro-F1 and accuracy on the held-out split (stratified, ``--test-size``, one
split per ``--seeds`` seed), and, as an out-of-domain check, how each method labels the
messages of examples/faq-agent/questions.jsonl (recall on its ``escalation`` cases and
false alarms on the others). Nothing is tuned to either set.

    .venv/bin/python benchmarks/bench_classifier.py [--seeds 42] [--epochs 4]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from _util import EXAMPLE_BOT, REPO, table, write_results

from botkit.classifier import EscalationClassifier
from botkit.evaluation.testset import load_testset
from botkit.policy import is_angry, wants_human
from botkit.training import TrainingOptions, evaluate_predictions, read_labelled_csv, split, train_classifier

DATA = REPO / "examples" / "escalation" / "escalation.csv"
LABELS = ["escalate", "ok"]


def keyword(texts: list[str]) -> list[str]:
    return ["escalate" if wants_human(t) or is_angry(t) else "ok" for t in texts]


def out_of_domain(predict: object, questions: list) -> dict[str, float]:
    predicted = predict([q.question for q in questions])  # type: ignore[operator]
    esc = [p for p, q in zip(predicted, questions) if q.kind == "escalation"]
    other = [p for p, q in zip(predicted, questions) if q.kind != "escalation"]
    return {
        "escalation_recall": esc.count("escalate") / len(esc),
        "false_alarm_rate": other.count("escalate") / len(other),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    parser.add_argument("--epochs", type=float, default=4.0)
    parser.add_argument("--test-size", type=float, default=0.2)
    parser.add_argument("--base", default="all-MiniLM-L6-v2",
                        help="encoder for both learned methods: the bundled MiniLM (default) or a local folder")
    args = parser.parse_args()

    texts, labels = read_labelled_csv(args.data)
    questions = load_testset(EXAMPLE_BOT / "questions.jsonl")
    from knowledge.embeddings import load_embedder
    from sklearn.linear_model import LogisticRegression

    embedder = load_embedder(args.base)
    runs: list[dict] = []
    for seed in args.seeds:
        train_x, test_x, train_y, test_y = split(texts, labels, test_size=args.test_size, seed=seed)
        row: dict = {"seed": seed, "train": len(train_x), "test": len(test_x)}

        started = time.perf_counter()
        row["keyword"] = evaluate_predictions(test_y, keyword(test_x), LABELS)
        row["keyword"]["ms_per_message"] = (time.perf_counter() - started) * 1000 / len(test_x)
        row["keyword"]["out_of_domain"] = out_of_domain(keyword, questions)

        logreg = LogisticRegression(max_iter=2000, class_weight="balanced", random_state=seed)
        logreg.fit(embedder.embed(train_x), train_y)
        started = time.perf_counter()
        predicted = list(logreg.predict(embedder.embed(test_x)))
        row["logreg-minilm"] = evaluate_predictions(test_y, predicted, LABELS)
        row["logreg-minilm"]["ms_per_message"] = (time.perf_counter() - started) * 1000 / len(test_x)
        row["logreg-minilm"]["out_of_domain"] = out_of_domain(lambda xs: list(logreg.predict(embedder.embed(xs))), questions)

        with tempfile.TemporaryDirectory(prefix="bench-clf-") as tmp:
            report = train_classifier(texts, labels, Path(tmp) / "model",
                                      TrainingOptions(base=args.base, epochs=args.epochs, seed=seed, test_size=args.test_size),
                                      log=lambda m: print(f"  {m}", flush=True))
            classifier = EscalationClassifier.load(Path(tmp) / "model")
            started = time.perf_counter()
            for text in test_x:
                classifier.escalation_probability(text)
            ms = (time.perf_counter() - started) * 1000 / len(test_x)
            row["fine-tuned"] = dict(report.metrics, ms_per_message=ms, train_seconds=report.seconds,
                                     out_of_domain=out_of_domain(classifier.predict, questions))
        runs.append(row)
        print(f"seed {seed}: keyword {row['keyword']['macro_f1']:.3f}, logreg {row['logreg-minilm']['macro_f1']:.3f}, "
              f"fine-tuned {row['fine-tuned']['macro_f1']:.3f} (trained in {report.seconds:.0f}s)", flush=True)

    methods = ("keyword", "logreg-minilm", "fine-tuned")
    rows = []
    for method in methods:
        f1 = [r[method]["macro_f1"] for r in runs]
        acc = [r[method]["accuracy"] for r in runs]
        rec = [r[method]["per_label"]["escalate"]["recall"] for r in runs]
        prec = [r[method]["per_label"]["escalate"]["precision"] for r in runs]
        ood = runs[-1][method]["out_of_domain"]
        rows.append([method, statistics.mean(f1), min(f1), statistics.mean(acc), statistics.mean(prec), statistics.mean(rec),
                     statistics.mean(r[method]["ms_per_message"] for r in runs),
                     ood["escalation_recall"], ood["false_alarm_rate"]])
    print()
    print(f"held-out split: {runs[0]['test']} of {len(texts)} rows, seeds {args.seeds}")
    print(table(["method", "macro-F1", "min F1", "accuracy", "esc. precision", "esc. recall", "ms/msg",
                 "faq esc. recall", "faq false alarms"], rows))
    path = write_results("classifier", {"data": str(args.data), "base": args.base, "epochs": args.epochs, "runs": runs})
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
