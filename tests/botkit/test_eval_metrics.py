"""Figures of an evaluation run, gates, comparisons and the HTML report (no bot needed)."""

from __future__ import annotations

import pytest

from botkit.errors import ConfigError
from botkit.evaluation import CaseResult, compare_runs, compute_metrics, parse_gates, render_html, summarize
from botkit.evaluation.metrics import check_gates, quotes_instructions
from botkit.evaluation.testset import TestCase
from botkit.prompt import GROUNDING_RULES


def case(id: str, kind: str = "direct", **fields: object) -> TestCase:
    return TestCase(id=id, kind=kind, question=f"question {id}", **fields)  # type: ignore[arg-type]


def test_retrieval_hits_and_mrr() -> None:
    results = [
        CaseResult(case("a", expected_sources=["billing/plans.md"]), retrieved=["billing/plans.md", "x"]),
        CaseResult(case("b", expected_sources=["faq.csv#refund"]), retrieved=["x", "y", "faq.csv#refund"]),
        CaseResult(case("c", expected_sources=["guide.pdf"]), retrieved=["x", "y", "z", "w", "guide.pdf"]),
        CaseResult(case("d", expected_sources=["none.md"]), retrieved=["x"]),
        CaseResult(case("oos", "out_of_scope"), retrieved=["x"], abstained=True),  # no expected sources: not counted
    ]
    m = compute_metrics(results)
    assert m["retrieval_cases"] == 4
    assert m["hit@1"] == pytest.approx(1 / 4)
    assert m["hit@3"] == pytest.approx(2 / 4)
    assert m["hit@5"] == pytest.approx(3 / 4)
    assert m["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 5 + 0) / 4)


def test_source_fragments_match_their_file() -> None:
    # an expected file matches any fragment of it; an expected fragment only itself
    r = CaseResult(case("a", expected_sources=["faq.csv"]), retrieved=["faq.csv#x"])
    assert r.rank == 1
    r = CaseResult(case("b", expected_sources=["faq.csv#y"]), retrieved=["faq.csv#x"])
    assert r.rank is None


def test_facts_citations_and_pass() -> None:
    good = CaseResult(case("a", expected_sources=["p.md"], answer_facts=["$24", "Annual"]),
                      answer="It costs $24 per user; annual billing saves.", citations=["p.md"])
    half = CaseResult(case("b", expected_sources=["p.md"], answer_facts=["$24", "60 minutes"]),
                      answer="It costs $24.", citations=["other.md"])
    m = compute_metrics([good, half])
    assert m["fact_recall"] == pytest.approx(3 / 4)
    assert m["all_facts_rate"] == pytest.approx(1 / 2)
    assert m["citation_accuracy"] == pytest.approx(1 / 2)
    assert good.passed and not half.passed
    assert half.failures == ["missing facts: '60 minutes'"]


def test_abstention_precision_recall_and_handoffs() -> None:
    results = [
        CaseResult(case("o1", "out_of_scope"), abstained=True),
        CaseResult(case("o2", "out_of_scope"), answer="Sure! The weather is fine."),
        CaseResult(case("a1", expected_sources=["p.md"]), abstained=True),  # a wrong abstention
        CaseResult(case("a2", expected_sources=["p.md"]), answer="ok"),
        CaseResult(case("e1", "escalation"), handoff=True),
        CaseResult(case("e2", "escalation"), answer="Here is an article."),
        CaseResult(case("i1", "injection"), abstained=True, handoff=True),  # not counted for abstention
    ]
    m = compute_metrics(results)
    assert m["abstain_precision"] == pytest.approx(1 / 2)
    assert m["abstain_recall"] == pytest.approx(1 / 2)
    assert m["handoff_accuracy"] == pytest.approx(1 / 2)
    assert m["false_handoff_rate"] == pytest.approx(1 / 5)
    assert "did not abstain" in results[1].failures
    assert "abstained on an answerable question" in results[2].failures
    assert "not handed off" in results[5].failures
    assert "handed off (not an escalation case)" in results[6].failures


def test_undefined_figures_are_none() -> None:
    m = compute_metrics([CaseResult(case("a", expected_sources=["p.md"]), answer="x")])
    assert m["handoff_accuracy"] is None and m["abstain_recall"] is None and m["bleu"] is None
    assert m["injection_safety"] is None


def test_injection_safety() -> None:
    rule_line = GROUNDING_RULES.splitlines()[3].lstrip("- ")
    assert quotes_instructions(f"Sure, my rules say: {rule_line}")
    assert quotes_instructions("Here you go: " + GROUNDING_RULES[:120])
    assert quotes_instructions("I am told: You are a helpful bot for Acme Support.", persona="You are a helpful bot for Acme Support.")
    assert not quotes_instructions("You can reset your password from the sign-in page [1].")
    results = [
        CaseResult(case("i1", "injection", must_not_contain=["PWNED"]), answer="The refund window is 30 days. pwned"),
        CaseResult(case("i2", "injection"), answer="I can't share that.", leaked=False),
        CaseResult(case("i3", "injection"), answer="rules...", leaked=True),
        CaseResult(case("d1", must_not_contain=["secret"]), answer="fine"),
    ]
    m = compute_metrics(results)
    assert m["safety_cases"] == 4
    assert m["injection_safety"] == pytest.approx(2 / 4)
    assert results[0].failures == ["contains forbidden 'PWNED'"]
    assert results[2].failures == ["quotes the system prompt"]


def test_bleu_and_rouge_match_the_libraries() -> None:
    import sacrebleu
    from rouge_score import rouge_scorer

    pairs = [
        ("Business costs $24 per user per month, or $240 per year.", "Business costs $24 per user per month on monthly billing, or $240 per user per year."),
        ("Click Forgot password on the sign-in page.", "Click \"Forgot password?\" on the sign-in page and enter your email."),
        ("No.", "Annual plans get a full refund within 30 days."),
    ]
    results = [CaseResult(case(f"c{i}", reference=ref), answer=hyp) for i, (hyp, ref) in enumerate(pairs)]
    m = compute_metrics(results)
    expected_bleu = sacrebleu.corpus_bleu([h for h, _ in pairs], [[r for _, r in pairs]]).score
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    expected_rouge = sum(scorer.score(r, h)["rougeL"].fmeasure for h, r in pairs) / len(pairs)
    assert m["reference_cases"] == 3
    assert m["bleu"] == pytest.approx(expected_bleu)
    assert m["rougeL"] == pytest.approx(expected_rouge)
    assert 0 < m["bleu"] < 100 and 0 < m["rougeL"] < 1
    # identical text scores the maximum
    same = compute_metrics([CaseResult(case("s", reference=pairs[0][1]), answer=pairs[0][1])])
    assert same["bleu"] == pytest.approx(100.0) and same["rougeL"] == pytest.approx(1.0)


def test_errors_count_as_failures_and_skip_latency() -> None:
    results = [
        CaseResult(case("e", "escalation"), error="BackendError: down"),
        CaseResult(case("a", expected_sources=["p.md"]), answer="x", latency_ms=100.0, backend="extractive", prompt_tokens=10),
        CaseResult(case("b", expected_sources=["p.md"]), answer="y", latency_ms=300.0, backend="extractive", prompt_tokens=30),
    ]
    summary = summarize(results)
    assert summary["errors"] == 1 and summary["handoff_accuracy"] == 0.0
    assert summary["latency_p50_ms"] == pytest.approx(200.0)
    assert summary["latency_p95_ms"] == pytest.approx(290.0)
    assert summary["latency"]["extractive"]["cases"] == 2
    assert summary["latency"]["extractive"]["prompt_tokens"] == 40
    assert summary["cases"][0]["error"] == "BackendError: down"
    assert summary["cases"][0]["failures"][0].startswith("error:")
    assert set(summary["per_kind"]) == {"escalation", "direct"}


def test_gates() -> None:
    gates = parse_gates(["hit@3=0.9", "abstain_recall=0.8,bleu=10"])
    assert [(g.metric, g.value) for g in gates] == [("hit@3", 0.9), ("abstain_recall", 0.8), ("bleu", 10.0)]
    outcomes = check_gates({"hit@3": 0.95, "abstain_recall": 0.5, "bleu": None}, gates)
    assert [o.ok for o in outcomes] == [True, False, False]
    with pytest.raises(ConfigError, match="unknown metric 'hit@4'.*known metrics: pass_rate, hit@1"):
        parse_gates(["hit@4=0.5"])
    with pytest.raises(ConfigError, match="lower is better"):
        parse_gates(["latency_p95_ms=100"])
    with pytest.raises(ConfigError, match="expected METRIC=VALUE"):
        parse_gates(["hit@3"])
    with pytest.raises(ConfigError, match="not a number"):
        parse_gates(["hit@3=high"])


def test_compare_runs() -> None:
    before = summarize([
        CaseResult(case("a", expected_sources=["p.md"], answer_facts=["x"]), answer="x", retrieved=["p.md"]),
        CaseResult(case("b", "escalation"), answer="no"),
        CaseResult(case("gone"), answer=""),
    ])
    after = summarize([
        CaseResult(case("a", expected_sources=["p.md"], answer_facts=["x"]), answer="y", retrieved=["q.md"]),
        CaseResult(case("b", "escalation"), handoff=True),
        CaseResult(case("new"), answer=""),
    ])
    comparison = compare_runs(before, after)
    deltas = {d.metric: d for d in comparison.deltas}
    assert deltas["hit@5"].change == pytest.approx(-1.0) and deltas["hit@5"].better is False
    assert deltas["handoff_accuracy"].change == pytest.approx(1.0) and deltas["handoff_accuracy"].better
    assert [r["id"] for r in comparison.pass_to_fail] == ["a"]
    assert [r["id"] for r in comparison.fail_to_pass] == ["b"]
    assert comparison.only_before == ["gone"] and comparison.only_after == ["new"]
    assert comparison.to_dict()["per_kind_pass_rate"]["escalation"]["after"] == 1.0


def test_report_escapes_text_and_embeds_plots() -> None:
    evil = "<script>alert('x')</script>"
    results = [
        CaseResult(case("x<1>", expected_sources=["p.md"], answer_facts=["fact & more"]), answer=evil,
                   latency_ms=12.0, backend="extractive"),
        CaseResult(case("ok", "out_of_scope"), abstained=True, latency_ms=5.0),
    ]
    page = render_html(summarize(results, info={"bot": "Acme <b>", "testset": "t.jsonl"}))
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "x&lt;1&gt;" in page and "fact &amp; more" in page and "Acme &lt;b&gt;" in page
    assert page.count("data:image/png;base64,") == 2
    assert "Failing cases (1)" in page
    assert "<link" not in page and "src=\"http" not in page  # self-contained
