"""A self-contained HTML page of an evaluation run (``botkit eval --report FILE.html``).

One file, no external assets: inline CSS, plots as base64 PNG made with matplotlib
(per-kind bars and a latency histogram), the figures, and each failing case side by side
with what was expected. Every piece of text from the test set or the bot is escaped.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

from botkit.errors import ConfigError

FIGURES = (
    ("pass_rate", "cases passed"),
    ("hit@1", "retrieval hit@1"),
    ("hit@3", "retrieval hit@3"),
    ("hit@5", "retrieval hit@5"),
    ("mrr", "retrieval MRR"),
    ("fact_recall", "answer facts found"),
    ("all_facts_rate", "answers with every fact"),
    ("citation_accuracy", "answers citing an expected source"),
    ("bleu", "BLEU (sacrebleu, 0–100)"),
    ("rougeL", "ROUGE-L F1"),
    ("abstain_precision", "abstention precision"),
    ("abstain_recall", "abstention recall (out_of_scope)"),
    ("handoff_accuracy", "escalations handed off"),
    ("false_handoff_rate", "other cases handed off"),
    ("injection_safety", "safe replies to injection probes"),
    ("latency_p50_ms", "latency p50 (ms)"),
    ("latency_p95_ms", "latency p95 (ms)"),
)
_KIND_COLUMNS = ("case_count", "pass_rate", "hit@5", "mrr", "all_facts_rate", "citation_accuracy",
                 "abstain_recall", "handoff_accuracy", "injection_safety")
_BAR_METRICS = (("pass_rate", "passed"), ("hit@5", "hit@5"), ("all_facts_rate", "all facts"))

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;color:#1f2937;padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #e5e7eb;padding-bottom:.3rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0}th,td{border:1px solid #e5e7eb;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f9fafb}td.num{text-align:right;font-variant-numeric:tabular-nums}
.meta{color:#6b7280}.bad{color:#b91c1c}.good{color:#15803d}
.case{border:1px solid #e5e7eb;border-radius:6px;margin:1rem 0;padding:.5rem 1rem}
.case .cols{display:grid;grid-template-columns:1fr 1fr;gap:1rem}
.case pre{white-space:pre-wrap;word-break:break-word;background:#f9fafb;padding:.5rem;border-radius:4px;margin:.25rem 0}
.tag{display:inline-block;background:#eef2ff;color:#3730a3;border-radius:4px;padding:0 .4rem;font-size:.85em}
img{max-width:100%}
"""


def _fmt(value: Any, metric: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if metric.endswith("_ms") or metric == "bleu":
            return f"{value:.1f}"
        return f"{value:.3f}"
    return str(value)


def _text(value: Any) -> str:
    return ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="plot" src="data:image/png;base64,{data}">'


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ConfigError("matplotlib is not installed", hint="pip install 'botkit[eval]'") from exc
    return plt


def kind_bars(per_kind: dict[str, dict[str, Any]]) -> str:
    """Grouped bars: pass rate, hit@5 and all-facts rate per kind (an ``<img>`` tag)."""
    if not per_kind:
        return ""
    plt = _pyplot()
    kinds = sorted(per_kind)
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(kinds) + 2), 3.4))
    width = 0.8 / len(_BAR_METRICS)
    for i, (metric, label) in enumerate(_BAR_METRICS):
        values = [per_kind[k].get(metric) for k in kinds]
        xs = [j + (i - (len(_BAR_METRICS) - 1) / 2) * width for j in range(len(kinds))]
        ax.bar(xs, [v if v is not None else 0 for v in values], width, label=label)
    ax.set_xticks(range(len(kinds)))
    ax.set_xticklabels(kinds, rotation=20, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("share of cases")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=len(_BAR_METRICS), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def latency_histogram(cases: Sequence[dict[str, Any]]) -> str:
    """Histogram of the reply latency, one series per backend (an ``<img>`` tag)."""
    groups: dict[str, list[float]] = {}
    for case in cases:
        if case.get("latency_ms") is not None and not case.get("error"):
            groups.setdefault(case.get("backend") or "none", []).append(float(case["latency_ms"]))
    if not groups:
        return ""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.hist(list(groups.values()), bins=20, label=list(groups), stacked=True)
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("replies")
    ax.legend(frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def _list(items: Sequence[Any] | None) -> str:
    if not items:
        return "<span class=meta>(none)</span>"
    return ", ".join(f"<code>{escape(str(item))}</code>" for item in items)


def _expected_behaviour(case: dict[str, Any]) -> str:
    kind = case.get("kind")
    if kind == "escalation":
        return "hand the conversation to a person"
    if kind == "out_of_scope":
        return "abstain (the knowledge base has no answer)"
    if kind == "injection":
        return "stay safe: no forbidden text, no system prompt"
    return "answer from the expected sources"


def _case_block(case: dict[str, Any]) -> str:
    history = "".join(f"<pre>{escape(m)}</pre>" for m in case.get("history") or [])
    flags = []
    for name in ("abstained", "handoff"):
        if case.get(name):
            flags.append(name)
    expected = [
        f"<p><b>Behaviour:</b> {escape(_expected_behaviour(case))}</p>",
        f"<p><b>Sources:</b> {_list(case.get('expected_sources'))}</p>",
        f"<p><b>Facts:</b> {_list(case.get('answer_facts'))}</p>",
    ]
    if case.get("must_not_contain"):
        expected.append(f"<p><b>Must not contain:</b> {_list(case.get('must_not_contain'))}</p>")
    if case.get("reference"):
        expected.append(f"<p><b>Reference:</b></p><pre>{escape(case['reference'])}</pre>")
    got = [
        f"<pre>{escape(case.get('answer') or '')}</pre>",
        f"<p><b>Flags:</b> {escape(', '.join(flags) or 'answered')}</p>",
        f"<p><b>Cited:</b> {_list(case.get('citations'))}</p>",
        f"<p><b>Retrieved (top 5):</b> {_list(case.get('retrieved'))}"
        f" — rank of first expected: {escape(_fmt(case.get('rank')))}</p>",
        f"<p><b>Facts found:</b> {_list(case.get('facts_found'))}</p>",
    ]
    failures = "".join(f"<li>{escape(f)}</li>" for f in case.get("failures") or [])
    return (
        f"<div class=case><p><span class=tag>{escape(str(case.get('kind')))}</span> "
        f"<b>{escape(str(case.get('id')))}</b></p>"
        f"{('<p class=meta>Earlier messages:</p>' + history) if history else ''}"
        f"<p><b>Question:</b></p><pre>{escape(str(case.get('question')))}</pre>"
        f"<ul class=bad>{failures}</ul>"
        f"<div class=cols><div><h3>Expected</h3>{''.join(expected)}</div>"
        f"<div><h3>Got</h3>{''.join(got)}</div></div></div>"
    )


def render_html(summary: dict[str, Any], *, title: str | None = None) -> str:
    """The report page of a run's ``--json`` document."""
    cases = summary.get("cases") or []
    failing = [c for c in cases if not c.get("passed")]
    title = title or f"botkit eval — {summary.get('bot', 'bot')}"
    meta = " · ".join(
        escape(f"{label}: {_text(summary[key])}")
        for key, label in (("testset", "test set"), ("backends", "backends"), ("escalation_classifier", "classifier"),
                           ("started_at", "started"), ("duration_s", "seconds"))
        if summary.get(key) not in (None, "", [])
    )
    figures = "".join(
        f"<tr><td>{escape(label)}</td><td><code>{escape(key)}</code></td><td class=num>{escape(_fmt(summary.get(key), key))}</td></tr>"
        for key, label in FIGURES
    )
    per_kind = summary.get("per_kind") or {}
    kind_head = "".join(f"<th>{escape(c)}</th>" for c in _KIND_COLUMNS)
    kind_rows = "".join(
        f"<tr><td>{escape(kind)}</td>"
        + "".join(f"<td class=num>{escape(_fmt(values.get(c), c))}</td>" for c in _KIND_COLUMNS)
        + "</tr>"
        for kind, values in sorted(per_kind.items())
    )
    latency = summary.get("latency") or {}
    latency_rows = "".join(
        f"<tr><td>{escape(backend)}</td>"
        + "".join(f"<td class=num>{escape(_fmt(v.get(c), c))}</td>"
                  for c in ("cases", "p50_ms", "p95_ms", "mean_ms", "prompt_tokens_mean", "completion_tokens_mean"))
        + "</tr>"
        for backend, v in latency.items()
    )
    warnings = "".join(f"<p class=bad>{escape(w)}</p>" for w in summary.get("warnings") or [])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{escape(title)}</title><style>{_CSS}</style></head><body>
<h1>{escape(title)}</h1>
<p class=meta>{meta}</p>{warnings}
<p><b>{summary.get('passed', 0)}</b> of <b>{summary.get('case_count', len(cases))}</b> cases passed,
<b class="{'bad' if summary.get('errors') else 'good'}">{summary.get('errors', 0)}</b> errors.</p>
<h2>Figures</h2>
<table><tr><th>figure</th><th>key</th><th>value</th></tr>{figures}</table>
<h2>By kind</h2>
{kind_bars(per_kind)}
<table><tr><th>kind</th>{kind_head}</tr>{kind_rows}</table>
<h2>Latency and tokens by backend</h2>
{latency_histogram(cases)}
<table><tr><th>backend</th><th>cases</th><th>p50 ms</th><th>p95 ms</th><th>mean ms</th><th>prompt tokens (mean)</th><th>completion tokens (mean)</th></tr>{latency_rows}</table>
<h2>Failing cases ({len(failing)})</h2>
{''.join(_case_block(c) for c in failing) or '<p class=good>Every case passed.</p>'}
</body></html>
"""


def write_report(summary: dict[str, Any], path: str | Path) -> Path:
    """Write :func:`render_html` to ``path`` (UTF-8) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(summary), encoding="utf-8")
    return path


__all__ = ["kind_bars", "latency_histogram", "render_html", "write_report"]
