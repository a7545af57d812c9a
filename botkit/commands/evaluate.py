"""``botkit eval`` (test sets), ``botkit perplexity`` and ``botkit train-classifier``.

Exit statuses of ``botkit eval``: 0 when every ``--fail-under`` gate holds (or none is
given), 1 when a figure is below its gate or could not be measured, 2 for usage errors
(unknown metric, malformed test set, bad configuration). Cases that error are reported
in the output and counted as failures; they never stop the run.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from botkit.commands._common import BotOption, cli_errors, console, err_console, load_bot_config, print_json


def _fmt(value: Any, metric: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.1f}" if metric.endswith("_ms") or metric == "bleu" else f"{value:.3f}"
    return str(value)


def _split_targets(targets: list[str], gates: list[str]) -> tuple[Path | None, list[str]]:
    """The test set among the positional arguments; ``NAME=VALUE`` ones continue ``--fail-under``."""
    testset: Path | None = None
    extra_gates = list(gates)
    for target in targets:
        if "=" in target and not Path(target).exists():
            extra_gates.append(target)
        elif testset is None:
            testset = Path(target)
        else:
            raise typer.BadParameter(f"unexpected argument {target!r} (one test set at a time)")
    return testset, extra_gates


def _print_summary(summary: dict[str, Any]) -> None:
    from botkit.evaluation.report import FIGURES

    table = Table(title=f"botkit eval — {summary.get('bot', '')} ({summary['case_count']} cases)", title_justify="left")
    table.add_column("figure")
    table.add_column("key", style="dim")
    table.add_column("value", justify="right")
    for key, label in FIGURES:
        table.add_row(label, key, _fmt(summary.get(key), key))
    console.print(table)
    kinds = Table(title="by kind", title_justify="left")
    columns = ("case_count", "pass_rate", "hit@5", "mrr", "all_facts_rate", "citation_accuracy", "abstain_recall",
               "handoff_accuracy", "injection_safety")
    headers = ("cases", "passed", "hit@5", "mrr", "facts", "cited", "abstain", "handoff", "safe")
    kinds.add_column("kind")
    for header in headers:
        kinds.add_column(header, justify="right")
    for kind, values in sorted(summary["per_kind"].items()):
        kinds.add_row(escape(kind), *(_fmt(values.get(c), c) for c in columns))
    console.print(kinds)
    latency = Table(title="latency and tokens by backend", title_justify="left")
    for column in ("backend", "cases", "p50 ms", "p95 ms", "prompt tok (mean)", "completion tok (mean)"):
        latency.add_column(column, justify="left" if column == "backend" else "right")
    for backend, v in summary["latency"].items():
        latency.add_row(escape(backend), str(v["cases"]), _fmt(v["p50_ms"], "_ms"), _fmt(v["p95_ms"], "_ms"),
                        f"{v['prompt_tokens_mean']:.0f}", f"{v['completion_tokens_mean']:.0f}")
    console.print(latency)
    failing = [c for c in summary["cases"] if not c["passed"]]
    if failing:
        console.print(f"[bold]failing cases ({len(failing)})[/]")
        for case in failing:
            console.print(f"  [red]✗[/] {escape(case['id'])} [dim]({escape(case['kind'])})[/]: {escape('; '.join(case['failures']))}")
    for warning in summary.get("warnings") or []:
        err_console.print(f"[yellow]warning:[/] {escape(warning)}")
    console.print(f"[bold]{summary['passed']}[/] of {summary['case_count']} cases passed, {summary['errors']} errors.")


def _print_comparison(comparison: Any, before: str, after: str) -> None:
    table = Table(title=f"{before} → {after}", title_justify="left")
    for column in ("metric", "before", "after", "change"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for delta in comparison.deltas:
        change = delta.change
        colour = "green" if delta.better else ("red" if delta.better is False else "dim")
        text = "–" if change is None else f"{change:+.1f}" if delta.metric.endswith("_ms") or delta.metric in ("bleu", "errors", "prompt_tokens", "completion_tokens") else f"{change:+.3f}"
        table.add_row(delta.metric, _fmt(delta.before, delta.metric), _fmt(delta.after, delta.metric), f"[{colour}]{text}[/]")
    console.print(table)
    if comparison.per_kind:
        kinds = Table(title="pass rate by kind", title_justify="left")
        for column in ("kind", "before", "after", "change"):
            kinds.add_column(column, justify="left" if column == "kind" else "right")
        for kind, delta in comparison.per_kind.items():
            change = delta.change
            colour = "green" if delta.better else ("red" if delta.better is False else "dim")
            kinds.add_row(escape(kind), _fmt(delta.before), _fmt(delta.after), f"[{colour}]{'–' if change is None else f'{change:+.3f}'}[/]")
        console.print(kinds)
    for title, rows, mark, key in (("pass → fail", comparison.pass_to_fail, "[red]✗[/]", "failures_after"),
                                   ("fail → pass", comparison.fail_to_pass, "[green]✓[/]", "failures_before")):
        console.print(f"[bold]{title} ({len(rows)})[/]")
        for row in rows:
            why = "; ".join(row[key])
            label = "was" if key == "failures_before" else "now"
            console.print(f"  {mark} {escape(str(row['id']))} [dim]({escape(str(row['kind']))})[/] {label}: {escape(why)}")
    if comparison.only_before or comparison.only_after:
        console.print(f"[dim]only in {escape(before)}: {escape(', '.join(comparison.only_before) or '-')}; "
                      f"only in {escape(after)}: {escape(', '.join(comparison.only_after) or '-')}[/]")


def register(app: typer.Typer) -> None:
    """Add ``eval``, ``perplexity`` and ``train-classifier`` to the CLI."""

    @app.command("eval")
    def eval_command(
        targets: list[str] = typer.Argument(None, metavar="TESTSET.jsonl", help="Test set: one JSON case per line."),
        bot: Path = BotOption,
        backend: str | None = typer.Option(None, "--backend", help="Evaluate with this backend only (replaces `backends`)."),
        json_output: bool = typer.Option(False, "--json", help="Print the figures and every case as one JSON object."),
        report: Path | None = typer.Option(None, "--report", help="Write a self-contained HTML report to this file."),
        save: Path | None = typer.Option(None, "--save", help="Also write the --json document to this file (for --compare)."),
        fail_under: list[str] = typer.Option(
            None, "--fail-under", metavar="METRIC=VALUE",
            help="Exit 1 when a figure is below VALUE, e.g. --fail-under hit@3=0.9 abstain_recall=0.8.",
        ),
        concurrency: int = typer.Option(4, "--concurrency", min=1, max=64, help="Cases run at the same time."),
        classifier: Path | None = typer.Option(
            None, "--escalation-classifier", help="Use this escalation classifier folder (overrides bot.yaml)."
        ),
        without_classifier: bool = typer.Option(
            False, "--without-classifier", help="Evaluate with explicit escalation rules only (no classifier)."
        ),
        compare: tuple[Path, Path] | None = typer.Option(
            None, "--compare", metavar="A.json B.json", help="Show what changed between two saved --json runs."
        ),
    ) -> None:
        """Evaluate the bot on a labelled test set: retrieval, answers, abstention, handoff, safety, latency.

        Each case runs through the real bot in a fresh conversation, in a temporary
        conversation store (production conversations are never touched). Key names of
        --json: see botkit/evaluation/metrics.py (hit@1/3/5, mrr, fact_recall,
        all_facts_rate, citation_accuracy, bleu, rougeL, abstain_precision, abstain_recall,
        handoff_accuracy, false_handoff_rate, injection_safety, per_kind, latency, cases).
        """
        from botkit.evaluation import compare_runs, load_run, load_testset, parse_gates

        if compare:
            with cli_errors():
                runs = [load_run(path) for path in compare]
            comparison = compare_runs(*runs)
            if json_output:
                print_json(comparison.to_dict())
            else:
                _print_comparison(comparison, str(compare[0]), str(compare[1]))
            return
        testset, gate_specs = _split_targets(targets or [], fail_under or [])
        if testset is None:
            err_console.print("[bold red]error:[/] give a test set (TESTSET.jsonl) or --compare A.json B.json")
            raise typer.Exit(2)
        if classifier and without_classifier:
            err_console.print("[bold red]error:[/] --escalation-classifier and --without-classifier exclude each other")
            raise typer.Exit(2)
        with cli_errors():
            gates = parse_gates(gate_specs)
            cases = load_testset(testset)
        config = load_bot_config(bot)
        summary = _run_eval(config, cases, testset=testset, backend=backend, concurrency=concurrency,
                            classifier=classifier, without_classifier=without_classifier)
        from botkit.evaluation import check_gates

        outcomes = check_gates(summary, gates)
        summary["gates"] = [o.to_dict() for o in outcomes]
        if save:
            save.parent.mkdir(parents=True, exist_ok=True)
            save.write_text(json.dumps(summary, ensure_ascii=False, indent=2, default=str) + "\n", encoding="utf-8")
        if report:
            from botkit.evaluation import write_report

            with cli_errors():
                write_report(summary, report)
            err_console.print(f"[dim]report written to {escape(str(report))}[/]")
        if json_output:
            print_json(summary)
        else:
            _print_summary(summary)
        failed = [o for o in outcomes if not o.ok]
        for outcome in outcomes:
            status = "[green]ok[/]" if outcome.ok else "[red]below[/]"
            actual = "not measured" if outcome.actual is None else _fmt(outcome.actual, outcome.gate.metric)
            err_console.print(f"gate {escape(outcome.gate.metric)} >= {outcome.gate.value:g}: {actual} {status}")
        if failed:
            raise typer.Exit(1)

    @app.command("perplexity")
    def perplexity_command(
        model: str = typer.Option(..., "--model", help="Local causal LM folder (or a model id in the local HF cache)."),
        bot: Path = BotOption,
        text: Path | None = typer.Option(None, "--text", help="Score this UTF-8 text file instead of the bot's knowledge."),
        stride: int | None = typer.Option(None, "--stride", min=1, help="Window step in tokens (default: half the window)."),
        max_length: int | None = typer.Option(None, "--max-length", min=2, help="Window in tokens (default: the model's context)."),
        json_output: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    ) -> None:
        """Perplexity of a local language model over the bot's knowledge chunks or a text file."""
        from botkit.perplexity import knowledge_texts, load_causal_lm, perplexity

        with cli_errors():
            if text is not None:
                try:
                    texts = [text.read_text(encoding="utf-8")]
                except (OSError, UnicodeDecodeError) as exc:
                    from botkit.errors import ConfigError

                    raise ConfigError(f"--text {text}: cannot read it: {exc}") from exc
                source = str(text)
            else:
                config = load_bot_config(bot)
                texts = knowledge_texts(config)
                source = f"{len(texts)} knowledge chunks of {config.root}"
            lm, tokenizer = load_causal_lm(model)
            with Progress(TextColumn("perplexity"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                          console=err_console, transient=True, disable=json_output or len(texts) < 2) as bar:
                task = bar.add_task("score", total=len(texts))
                result = perplexity(lm, tokenizer, texts, max_length=max_length, stride=stride, model_name=model,
                                    progress=lambda done, total: bar.update(task, completed=done))
        if json_output:
            print_json({**result.to_dict(), "source": source})
            return
        console.print(f"perplexity [bold]{result.perplexity:.3f}[/] (mean NLL {result.mean_nll:.4f} nats/token)")
        console.print(f"[dim]{escape(model)} · {escape(source)} · {result.tokens} tokens scored in {result.documents} "
                      f"documents · window {result.max_length}, stride {result.stride}[/]")

    @app.command("train-classifier")
    def train_classifier_command(
        data: Path = typer.Argument(..., help="CSV with a header row and columns text,label (any label set)."),
        out: Path = typer.Option(..., "--out", help="Folder to save the model, tokenizer and botkit_classifier.json in."),
        base: str = typer.Option("all-MiniLM-L6-v2", "--base", help="Base encoder (default: the bundled MiniLM, offline)."),
        epochs: float = typer.Option(4.0, "--epochs", min=0.1, help="Training epochs."),
        batch_size: int = typer.Option(16, "--batch-size", min=1, help="Rows per training step."),
        lr: float = typer.Option(5e-5, "--lr", min=0.0, help="Learning rate."),
        test_size: float = typer.Option(0.2, "--test-size", min=0.01, max=0.9, help="Share of rows held out for evaluation."),
        seed: int = typer.Option(42, "--seed", help="Seed of the split and of training."),
        max_length: int = typer.Option(64, "--max-length", min=8, max=512, help="Tokens kept per text."),
        json_output: bool = typer.Option(False, "--json", help="Print the training report as JSON."),
    ) -> None:
        """Fine-tune a text classifier (e.g. for escalation) and report accuracy and macro-F1 on a held-out split.

        Use it in a bot with `escalation.classifier: DIR` in bot.yaml (the positive label is `escalate`).
        """
        from botkit.training import TrainingOptions, read_labelled_csv, train_classifier

        options = TrainingOptions(base=base, epochs=epochs, batch_size=batch_size, lr=lr, test_size=test_size,
                                  seed=seed, max_length=max_length)
        with cli_errors():
            texts, labels = read_labelled_csv(data)
            result = train_classifier(texts, labels, out, options,
                                      log=None if json_output else (lambda m: err_console.print(f"[dim]{escape(m)}[/]")))
        if json_output:
            print_json(result.to_dict())
            return
        metrics = result.metrics
        console.print(f"saved to [bold]{escape(result.out)}[/] ({result.train_rows} training rows, {result.test_rows} held out, {result.seconds:.0f} s)")
        console.print(f"held-out accuracy [bold]{metrics['accuracy']:.3f}[/], macro-F1 [bold]{metrics['macro_f1']:.3f}[/]")
        table = Table()
        for column in ("label", "precision", "recall", "f1", "support"):
            table.add_column(column, justify="left" if column == "label" else "right")
        for label, v in metrics["per_label"].items():
            table.add_row(escape(label), f"{v['precision']:.3f}", f"{v['recall']:.3f}", f"{v['f1']:.3f}", str(v["support"]))
        console.print(table)
        if result.positive_label:
            console.print(f"[dim]use it: escalation.classifier: {escape(result.out)} in bot.yaml[/]")


def _run_eval(
    config: Any, cases: list[Any], *, testset: Path, backend: str | None, concurrency: int,
    classifier: Path | None, without_classifier: bool,
) -> dict[str, Any]:
    from botkit.evaluation import evaluate

    with Progress(TextColumn("evaluating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, transient=True, disable=not err_console.is_terminal) as bar:
        task = bar.add_task("cases", total=len(cases))
        with cli_errors():
            run = asyncio.run(
                evaluate(
                    config, cases, backend=backend, concurrency=concurrency,
                    escalation_classifier=str(classifier) if classifier else None,
                    without_classifier=without_classifier,
                    on_result=lambda result: bar.advance(task),
                    info={"testset": str(testset)},
                )
            )
    return run.summary()
