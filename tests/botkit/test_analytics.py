"""Analytics: metrics per day and channel, reports with SVG charts, and the knowledge-gap finder."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import uuid
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from botkit.analytics.gaps import GapCluster, GapQuestion, find_gaps, gap_questions, gaps_csv
from botkit.analytics.metrics import compute_report, percentile, summarize
from botkit.analytics.report import format_text, report_body, standalone_html
from botkit.backends.scripted import ScriptedBackend
from botkit.bot import Bot
from botkit.config import BotConfig, TokenPrice
from botkit.store import create_engine

TODAY = date(2024, 6, 3)
T0 = datetime(2024, 6, 3, 9, 0, tzinfo=timezone.utc)

# Five topics the help centre does not cover, eight ways of asking about each.
TOPICS = {
    "delete_account": [
        "How do I permanently delete my account?", "I want to close my account and erase all my data",
        "Can you remove all my personal data under GDPR?", "Where is the option to delete my profile?",
        "Please delete my account and everything in it", "How can I request erasure of my personal information?",
        "Is there a way to cancel and delete my user account completely?", "what happens to my data if I delete my account",
    ],
    "mobile_app": [
        "Is there an iPhone app?", "The Android app keeps crashing when I open it", "Can I use the mobile app offline?",
        "Where do I download your app for iOS?", "The app on my phone won't sync",
        "does the mobile app support push notifications", "My Android application freezes on startup",
        "Is the iPad version of the app available?",
    ],
    "vat_invoice": [
        "How do I add my VAT number to invoices?", "My invoice is missing our company tax ID",
        "Can you reissue an invoice with the correct VAT details?", "Why was I charged sales tax on my invoice?",
        "I need an invoice with my business address and VAT ID", "Do you charge VAT for EU companies with a valid VAT number?",
        "How do I get a tax invoice for my payment?", "the invoice shows the wrong tax amount",
    ],
    "api_limits": [
        "What are the API rate limits?", "I'm getting HTTP 429 Too Many Requests from your API",
        "How many API calls can I make per minute?", "Can you raise the rate limit on our API key?",
        "Is there a quota on REST API requests per day?", "Our integration gets throttled by the API",
        "What is the maximum number of requests to the API per hour", "how do I handle rate limiting errors in the API",
    ],
    "dark_mode": [
        "Is there a dark mode?", "How do I switch the interface to a dark theme?",
        "Can I change the colour theme of the app to dark?", "The white background hurts my eyes, any night mode?",
        "Does the dashboard support a dark color scheme?", "How to enable dark theme in settings",
        "Can the UI follow my system's dark mode setting?", "I'd like a darker theme for the editor",
    ],
}


def _conv(cid: str, channel: str = "web", *, day: int = 0, handoff: bool = False) -> dict[str, object]:
    return {"id": cid, "channel": channel, "created_at": T0 + timedelta(days=day), "state": "bot",
            "metadata": {"handoff_at": 1.0} if handoff else {}}


def _msg(cid: str, role: str, **extra: object) -> dict[str, object]:
    return {"conversation_id": cid, "role": role, "abstained": False, "backend": None, "latency_ms": None,
            "prompt_tokens": None, "completion_tokens": None, "citations": [], **extra}


def test_summary_per_day_channel_and_backend() -> None:
    cite = {"source": "faq.csv#refund", "title": "Can I get a refund?"}
    conversations = [_conv("a"), _conv("b", handoff=True), _conv("c", "slack", day=1), _conv("d", "slack", day=1),
                     _conv("idle")]
    messages = [
        _msg("a", "user"), _msg("a", "assistant", backend="openai:gpt-4o-mini", latency_ms=900, prompt_tokens=1000,
                                completion_tokens=100, citations=[cite]),
        _msg("b", "user"), _msg("b", "assistant", abstained=True, backend="extractive", latency_ms=40),
        _msg("c", "user"), _msg("c", "assistant", backend="extractive", latency_ms=60, citations=[cite]),
        _msg("c", "user"), _msg("c", "agent"),  # an agent answered: not deflected
        _msg("d", "user"), _msg("d", "assistant", backend="extractive", latency_ms=50),
    ]
    feedback = [{"conversation_id": "a", "rating": 1}, {"conversation_id": "d", "rating": -1},
                {"conversation_id": "d", "rating": 1}]
    prices = {"gpt-4o-mini": TokenPrice(prompt=0.15, completion=0.6)}
    report = summarize(conversations, messages, feedback, since=TODAY, until=TODAY + timedelta(days=2), prices=prices,
                       known_sources=["faq.csv", "billing/plans.md"])
    t = report.total
    assert (t.conversations, t.turns, t.handoffs, t.replies, t.abstentions) == (4, 5, 2, 4, 1)  # "idle" had no message
    assert t.deflection_rate == 0.5 and t.handoff_rate == 0.5 and t.abstention_rate == 0.25
    assert (t.thumbs_up, t.thumbs_down, t.csat) == (2, 1, 0.6667)
    assert list(report.days) == ["2024-06-03", "2024-06-04", "2024-06-05"] and report.days["2024-06-05"].conversations == 0
    assert report.channels["slack"].conversations == 2 and report.channels["web"].handoffs == 1
    assert report.day_channels["2024-06-04"]["slack"].turns == 3
    by_backend = {b.backend: b for b in report.backends}
    assert by_backend["extractive"].replies == 3 and by_backend["extractive"].p50_ms == 50 and by_backend["extractive"].cost == 0
    assert by_backend["openai:gpt-4o-mini"].cost == pytest.approx((1000 * 0.15 + 100 * 0.6) / 1000)
    assert report.cited == [("faq.csv#refund", "Can I get a refund?", 2)]
    assert report.never_cited == ["billing/plans.md"]
    assert json.loads(json.dumps(report.to_dict()))["days"][1]["channels"]["slack"]["turns"] == 3
    assert percentile([1, 2, 3, 4, 100], 95) == 100 and percentile([], 50) is None


def test_html_report_draws_svg_and_escapes() -> None:
    evil = "<script>alert(1)</script>"
    report = summarize([_conv("a")], [_msg("a", "user"), _msg("a", "assistant", backend="extractive", latency_ms=10,
                                                               citations=[{"source": "x.md", "title": evil}])], [],
                       since=TODAY, until=TODAY + timedelta(days=6), known_sources=[evil])
    gap = GapCluster(label=evil, terms=["x"], size=3, reasons={"abstained": 3}, examples=[evil])
    html = standalone_html(report, [gap])
    assert html.count("<svg") >= 4 and "<rect" in html and "<polyline" in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "style=" not in report_body(report, [gap])  # CSP-friendly: classes, no inline styles
    text = format_text(report, [gap])
    assert "conversations 1" in text and "knowledge gaps" in text


def test_gap_csv_neutralises_formulas() -> None:
    gap = GapCluster(label="=HYPERLINK(\"http://evil\")", terms=["a"], size=1, reasons={"handoff": 1},
                     examples=["+1 call me", "ok"], nearest_source="faq.csv#x", nearest_score=0.4)
    rows = list(csv.DictReader(io.StringIO(gaps_csv([gap]))))
    assert rows[0]["label"].startswith("'=") and rows[0]["examples"].startswith("'+1")
    assert rows[0]["handoff"] == "1" and rows[0]["nearest_source"] == "faq.csv#x"


def test_gap_finder_recovers_the_topics() -> None:
    from sklearn.metrics import adjusted_rand_score

    from knowledge.embeddings import embedder_for

    questions, truth = [], []
    for topic, texts in enumerate(TOPICS.values()):
        for text in texts:
            questions.append(GapQuestion(text, ("abstained",), f"c{len(questions)}", len(questions)))
            truth.append(topic)
    embedder = embedder_for(BotConfig().knowledge)
    clusters = find_gaps(questions, embed=embedder.embed, distance=BotConfig().console.gap_distance)
    predicted = [0] * len(questions)
    for label, cluster in enumerate(clusters):
        for cid in cluster.conversation_ids:
            predicted[int(cid[1:])] = label
    ari = adjusted_rand_score(truth, predicted)
    print(f"gap finder: {len(clusters)} clusters, adjusted Rand index {ari:.3f}")
    assert ari >= 0.8, ari
    assert sum(c.size for c in clusters) == 40 and clusters[0].size >= clusters[-1].size
    top_terms = {term for cluster in clusters[:5] for term in cluster.terms}
    assert {"invoice", "api", "dark"} <= top_terms
    assert all(c.label in c.examples for c in clusters)


async def test_store_metrics_gaps_and_cli(make_bot: Callable[..., Bot], store_url: str, tmp_path: Path) -> None:
    scripted = ScriptedBackend()
    scripted.enqueue("Export from Settings > Data [1].")
    name = "analytics-" + uuid.uuid4().hex[:8]  # PostgreSQL's database is shared by the session's tests
    async with make_bot([scripted], name=name) as bot:
        answered = await bot.reply(None, "How do I export my data?")
        await bot.feedback(answered.conversation_id, rating=-1, message_id=answered.message_id)
        await bot.reply(None, "Do you have a dark mode for the dashboard?")  # abstains (nothing in the index)
        handed = await bot.reply(None, "Is there an iPhone app?")
        await bot.reply(handed.conversation_id, "talk to a human")
        sources = sorted(bot.knowledge.manifest.entries())
    engine = create_engine(store_url)
    try:
        start = datetime.now(timezone.utc) - timedelta(hours=1)
        found = {q.text: q.reasons for q in await gap_questions(engine, bot=name, since=start)}
        assert found == {"How do I export my data?": ("thumbs_down",),
                         "Do you have a dark mode for the dashboard?": ("abstained",),
                         "Is there an iPhone app?": ("abstained", "handoff")}
        report = await compute_report(engine, bot=name, since=date.today() - timedelta(days=1), known_sources=sources)
    finally:
        await engine.dispose()
    t = report.total
    assert (t.conversations, t.turns, t.handoffs, t.thumbs_down) == (3, 4, 1, 1)
    assert report.cited[0][0] == "faq.csv#export" and "faq.csv" not in report.never_cited
    assert "billing/plans.md" in report.never_cited

    bot_dir = tmp_path / "bot"
    (bot_dir / "bot.yaml").write_text(f"name: {name}\ndatabase_url: {store_url}\n", encoding="utf-8")
    from botkit.cli import app

    out = tmp_path / "report.html"
    runner = CliRunner(env={"BOTKIT_TEST_POSTGRES_URL": None})
    result = await asyncio.to_thread(runner.invoke,  # the CLI runs its own event loop
        app, ["report", "--bot", str(bot_dir), "--json", "--html", str(out), "--gaps-csv", str(tmp_path / "gaps.csv")])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["total"]["conversations"] == 3 and data["gaps"] and data["gaps"][0]["nearest_source"]
    assert "<svg" in out.read_text(encoding="utf-8")
    assert (tmp_path / "gaps.csv").read_text(encoding="utf-8").startswith("rank,size,label")
