"""Evaluation of a bot on a labelled test set (``botkit eval``).

- :mod:`~botkit.evaluation.testset`: load and validate the JSONL test-set format;
- :mod:`~botkit.evaluation.runner`: run each case through the real bot in an isolated store;
- :mod:`~botkit.evaluation.metrics`: per-case checks and the figures (key names documented there);
- :mod:`~botkit.evaluation.report`: the self-contained HTML report;
- :mod:`~botkit.evaluation.compare`: what changed between two runs.

Importing this package is cheap: the bot, sacrebleu, rouge-score and matplotlib are
imported where they are used.
"""

from __future__ import annotations

from botkit.evaluation.compare import Comparison, compare_runs, load_run
from botkit.evaluation.metrics import GATE_METRICS, CaseResult, Gate, check_gates, compute_metrics, parse_gates, summarize
from botkit.evaluation.report import render_html, write_report
from botkit.evaluation.runner import EvalRun, eval_config, evaluate, run_cases
from botkit.evaluation.testset import TestCase, TestSetError, load_testset, parse_lines

__all__ = [
    "GATE_METRICS", "CaseResult", "Comparison", "EvalRun", "Gate", "TestCase", "TestSetError", "check_gates",
    "compare_runs", "compute_metrics", "eval_config", "evaluate", "load_run", "load_testset", "parse_gates", "parse_lines",
    "render_html", "run_cases", "summarize", "write_report",
]
