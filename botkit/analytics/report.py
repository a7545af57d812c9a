"""Reports: plain text for the terminal, and HTML with charts drawn as inline SVG.

The HTML needs no script and no external library: bars and lines are ``<rect>`` and
``<polyline>`` elements computed here, styled by classes (:data:`REPORT_CSS`), so the
console can serve them under a strict Content-Security-Policy. Every text that came from a
visitor, a document or the configuration is escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from botkit.analytics.gaps import GapCluster
from botkit.analytics.metrics import Report

REPORT_CSS = """
.bk-report{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#111827}
.bk-report h2{font-size:18px;margin:24px 0 8px}.bk-report table{border-collapse:collapse;margin:8px 0}
.bk-report th,.bk-report td{border-bottom:1px solid #e5e7eb;padding:4px 10px;text-align:left;vertical-align:top}
.bk-report td.n{text-align:right;font-variant-numeric:tabular-nums}
.kpis{display:flex;flex-wrap:wrap;gap:12px}.kpi{border:1px solid #e5e7eb;border-radius:8px;padding:8px 14px;min-width:120px}
.kpi b{display:block;font-size:22px}.chart{max-width:100%;height:auto}
.chart text{font-size:11px;fill:#4b5563}.chart .axis{stroke:#9ca3af}.chart .grid{stroke:#e5e7eb}
.s0{fill:#2563eb;stroke:#2563eb}.s1{fill:#f59e0b;stroke:#f59e0b}.s2{fill:#10b981;stroke:#10b981}
.line{fill:none;stroke-width:2}.legend{display:flex;gap:14px;font-size:12px}.legend i{display:inline-block;width:10px;height:10px;margin-right:4px}
.sw0{background:#2563eb}.sw1{background:#f59e0b}.sw2{background:#10b981}
"""


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f} ms"


def format_text(report: Report, gaps: Sequence[GapCluster] = ()) -> str:
    """The report for a terminal."""
    t = report.total
    totals = (f"conversations {t.conversations}   turns {t.turns}   deflection {_pct(t.deflection_rate)}   "
              f"handoff {_pct(t.handoff_rate)}   abstention {_pct(t.abstention_rate)}   "
              f"thumbs {t.thumbs_up} up / {t.thumbs_down} down (CSAT {_pct(t.csat)})")
    lines = [f"botkit report{' for ' + report.bot if report.bot else ''}: {report.since} to {report.until} ({report.timezone})",
             "", totals, "", "by channel:"]
    for name, b in report.channels.items():
        lines.append(f"  {name:<12} {b.conversations:>6} conversations  deflection {_pct(b.deflection_rate):>6}  "
                     f"abstention {_pct(b.abstention_rate):>6}  CSAT {_pct(b.csat):>6}")
    lines += ["", "by day:"]
    for day, b in report.days.items():
        if b.conversations:
            lines.append(f"  {day}  {b.conversations:>5} conversations  {b.turns:>5} turns  "
                         f"deflection {_pct(b.deflection_rate):>6}  handoff {_pct(b.handoff_rate):>6}")
    lines += ["", "backends:"]
    for s in report.backends:
        lines.append(f"  {s.backend:<28} {s.replies:>6} replies  p50 {_ms(s.p50_ms):>8}  p95 {_ms(s.p95_ms):>8}  "
                     f"tokens {s.prompt_tokens}+{s.completion_tokens}  cost {s.cost:.4f}")
    lines += ["", "most cited sources:"] + [f"  {n:>5}  {s}" for s, _, n in report.cited[:10]]
    if report.never_cited:
        lines += ["", f"never cited ({len(report.never_cited)}):"] + [f"  {s}" for s in report.never_cited[:20]]
    if gaps:
        lines += ["", "knowledge gaps (largest first):"]
        for i, c in enumerate(gaps[:15], 1):
            near = f" (nearest: {c.nearest_source}, {c.nearest_score})" if c.nearest_source else ""
            lines.append(f"  {i:>2}. [{c.size}] {c.label}  — {', '.join(c.terms)}{near}")
    return "\n".join(lines) + "\n"


# -- SVG charts ----------------------------------------------------------------------------


def _svg(width: int, height: int, body: list[str], title: str) -> str:
    return (f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
            f'aria-label="{escape(title)}"><title>{escape(title)}</title>{"".join(body)}</svg>')


def stacked_bars(labels: Sequence[str], series: Sequence[Sequence[float]], names: Sequence[str], title: str,
                 *, width: int = 720, height: int = 220) -> str:
    """Vertical stacked bars, one per label (days), series stacked bottom-up."""
    left, bottom, top = 36, 24, 10
    totals = [sum(values) for values in zip(*series)] if series else []
    peak = max(totals or [0]) or 1
    plot_h, n = height - bottom - top, max(len(labels), 1)
    step = (width - left - 8) / n
    body = [f'<line class="axis" x1="{left}" y1="{height - bottom}" x2="{width - 4}" y2="{height - bottom}"/>',
            f'<text x="{left - 4}" y="{top + 8}" text-anchor="end">{peak:g}</text>',
            f'<text x="{left - 4}" y="{height - bottom}" text-anchor="end">0</text>']
    for i, label in enumerate(labels):
        y: float = height - bottom
        for k, values in enumerate(series):
            h = values[i] / peak * plot_h
            if h > 0:
                y -= h
                body.append(f'<rect class="s{k}" x="{left + i * step + 1:.1f}" y="{y:.1f}" width="{max(step - 2, 1):.1f}" '
                            f'height="{h:.1f}"><title>{escape(label)}: {escape(names[k])} {values[i]:g}</title></rect>')
        if n <= 14 or i % max(1, n // 10) == 0:
            body.append(f'<text x="{left + i * step + step / 2:.1f}" y="{height - 8}" text-anchor="middle">'
                        f'{escape(label[5:])}</text>')
    return _svg(width, height, body, title)


def lines_chart(labels: Sequence[str], series: Sequence[Sequence[float | None]], names: Sequence[str], title: str,
                *, width: int = 720, height: int = 200) -> str:
    """Lines of rates (0..1) over labels; gaps where a value is ``None``."""
    left, bottom, top = 36, 24, 10
    plot_h, n = height - bottom - top, max(len(labels), 1)
    step = (width - left - 8) / max(n - 1, 1)
    body = []
    for frac in (0, 0.5, 1):
        y = top + (1 - frac) * plot_h
        body.append(f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{width - 4}" y2="{y:.1f}"/>'
                    f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{int(frac * 100)}%</text>')
    for k, values in enumerate(series):
        points = [f"{left + i * step:.1f},{top + (1 - v) * plot_h:.1f}" for i, v in enumerate(values) if v is not None]
        if points:
            body.append(f'<polyline class="line s{k}" points="{" ".join(points)}"><title>{escape(names[k])}</title></polyline>')
    for i, label in enumerate(labels):
        if n <= 14 or i % max(1, n // 10) == 0:
            body.append(f'<text x="{left + i * step:.1f}" y="{height - 8}" text-anchor="middle">{escape(label[5:])}</text>')
    return _svg(width, height, body, title)


def hbars(items: Sequence[tuple[str, Sequence[float]]], names: Sequence[str], title: str, *, width: int = 720,
          unit: str = "") -> str:
    """Horizontal bars (one group per item, one bar per series)."""
    label_w, row, groups = 260, 16, max(len(names), 1)
    height = max(len(items), 1) * (row * groups + 8) + 8
    peak = max([v for _, values in items for v in values] or [0]) or 1
    body = []
    y = 4
    for label, values in items:
        short = label if len(label) <= 40 else label[:39] + "…"
        body.append(f'<text x="{label_w - 6}" y="{y + row * groups / 2 + 4:.1f}" text-anchor="end">{escape(short)}</text>')
        for k, value in enumerate(values):
            w = value / peak * (width - label_w - 70)
            body.append(f'<rect class="s{k}" x="{label_w}" y="{y}" width="{max(w, 1):.1f}" height="{row - 3}">'
                        f'<title>{escape(label)}: {escape(names[k])} {value:g}{unit}</title></rect>'
                        f'<text x="{label_w + w + 4:.1f}" y="{y + row - 5}">{value:g}{unit}</text>')
            y += row
        y += 8
    return _svg(width, height, body, title)


def _legend(names: Sequence[str]) -> str:
    return '<p class="legend">' + "".join(f'<span><i class="sw{k}"></i>{escape(n)}</span>' for k, n in enumerate(names)) + "</p>"


def report_body(report: Report, gaps: Sequence[GapCluster] = (), *, gaps_csv_href: str | None = None) -> str:
    """The report as an HTML fragment (``<section class="bk-report">``)."""
    t, days = report.total, list(report.days)
    kpis = [("Conversations", str(t.conversations)), ("Turns", str(t.turns)), ("Deflection", _pct(t.deflection_rate)),
            ("Handoff", _pct(t.handoff_rate)), ("Abstention", _pct(t.abstention_rate)),
            ("CSAT", f"{_pct(t.csat)} ({t.thumbs_up}👍 {t.thumbs_down}👎)")]
    out = ['<section class="bk-report">', '<div class="kpis">']
    out += [f'<div class="kpi">{escape(k)}<b>{escape(v)}</b></div>' for k, v in kpis]
    out.append("</div><h2>Conversations per day</h2>" + _legend(["answered by the bot", "handed to a person"]))
    deflected = [float(b.conversations - b.handoffs) for b in report.days.values()]
    handed = [float(b.handoffs) for b in report.days.values()]
    out.append(stacked_bars(days, [deflected, handed], ["bot", "person"], "Conversations per day"))
    out.append("<h2>Rates per day</h2>" + _legend(["deflection", "abstention", "CSAT"]))
    rates = [[b.deflection_rate for b in report.days.values()], [b.abstention_rate for b in report.days.values()],
             [b.csat for b in report.days.values()]]
    out.append(lines_chart(days, rates, ["deflection", "abstention", "CSAT"], "Rates per day"))
    out.append("<h2>By channel</h2><table><tr><th>channel</th><th>conversations</th><th>turns</th><th>deflection</th>"
               "<th>handoff</th><th>abstention</th><th>CSAT</th></tr>")
    for name, b in report.channels.items():
        out.append(f'<tr><td>{escape(name)}</td><td class="n">{b.conversations}</td><td class="n">{b.turns}</td>'
                   f'<td class="n">{_pct(b.deflection_rate)}</td><td class="n">{_pct(b.handoff_rate)}</td>'
                   f'<td class="n">{_pct(b.abstention_rate)}</td><td class="n">{_pct(b.csat)}</td></tr>')
    out.append("</table><h2>Backends</h2>")
    if report.backends:
        out.append(_legend(["p50 latency", "p95 latency"]))
        out.append(hbars([(s.backend, [s.p50_ms or 0, s.p95_ms or 0]) for s in report.backends], ["p50", "p95"],
                         "Latency by backend", unit=" ms"))
        out.append("<table><tr><th>backend</th><th>replies</th><th>prompt tokens</th><th>completion tokens</th>"
                   "<th>estimated cost</th></tr>")
        out += [f'<tr><td>{escape(s.backend)}</td><td class="n">{s.replies}</td><td class="n">{s.prompt_tokens}</td>'
                f'<td class="n">{s.completion_tokens}</td><td class="n">{s.cost:.4f}</td></tr>' for s in report.backends]
        out.append("</table>")
    out.append("<h2>Most cited sources</h2>")
    if report.cited:
        out.append(hbars([(title or source, [float(n)]) for source, title, n in report.cited[:15]], ["citations"],
                         "Most cited sources"))
    out.append(f"<h2>Sources never cited ({len(report.never_cited)})</h2><ul>")
    out += [f"<li>{escape(s)}</li>" for s in report.never_cited[:50]]
    out.append("</ul><h2>Knowledge gaps</h2>")
    if gaps_csv_href:
        out.append(f'<p><a href="{escape(gaps_csv_href)}" download>Download the gaps as CSV</a></p>')
    if gaps:
        out.append(hbars([(c.label, [float(c.size)]) for c in gaps[:12]], ["questions"], "Knowledge gaps by size"))
        out.append("<table><tr><th>#</th><th>questions</th><th>topic</th><th>terms</th><th>nearest source</th>"
                   "<th>examples</th></tr>")
        for i, c in enumerate(gaps, 1):
            near = f"{escape(c.nearest_title or c.nearest_source or '')} ({c.nearest_score})" if c.nearest_source else "–"
            examples = "<br>".join(escape(e) for e in c.examples)
            out.append(f'<tr><td class="n">{i}</td><td class="n">{c.size}</td><td>{escape(c.label)}</td>'
                       f"<td>{escape(', '.join(c.terms))}</td><td>{near}</td><td>{examples}</td></tr>")
        out.append("</table>")
    else:
        out.append("<p>No unanswered questions in this period.</p>")
    out.append("</section>")
    return "\n".join(out)


def standalone_html(report: Report, gaps: Sequence[GapCluster] = ()) -> str:
    """A self-contained HTML page (``botkit report --html FILE``)."""
    name = f" – {report.bot}" if report.bot else ""
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>botkit report{escape(name)}</title>'
            f"<style>{REPORT_CSS}body{{margin:24px}}</style></head><body><h1>botkit report{escape(name)}: "
            f"{report.since} – {report.until}</h1>{report_body(report, gaps)}</body></html>\n")


__all__ = ["REPORT_CSS", "format_text", "hbars", "lines_chart", "report_body", "stacked_bars", "standalone_html"]
