"""`botkit ingest`, `search`, `kb stats` and `eval-retrieval`: JSON output and errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixtures_index import CORPUS, embedder, make_bot  # noqa: F401
from typer.testing import CliRunner

from botkit.cli import app
from knowledge.embeddings import SentenceTransformerEmbedder
from knowledge.store import VectorStore

runner = CliRunner()

REPORT_KEYS = {"added", "updated", "removed", "unchanged", "failed", "chunks", "seconds"}


@pytest.fixture(scope="module")
def bot(tmp_path_factory: pytest.TempPathFactory, embedder: SentenceTransformerEmbedder) -> Path:
    """An ingested bot (the embedder fixture loads the model once for the module)."""
    path = make_bot(tmp_path_factory.mktemp("cli"))
    (path / "bot.yaml").write_text("name: Brew Help\nknowledge:\n  embedding_device: cpu\n")
    result = runner.invoke(app, ["ingest", "--bot", str(path), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report) == REPORT_KEYS and report["added"] == len(CORPUS) and report["failed"] == []
    return path


def test_ingest_json_again_is_all_unchanged(bot: Path) -> None:
    result = runner.invoke(app, ["ingest", "--bot", str(bot), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["unchanged"] == len(CORPUS) and report["added"] == report["updated"] == 0


def test_ingest_table_and_paths(bot: Path) -> None:
    (bot / "knowledge/shop/shipping.md").write_text("# Shipping\n\nShipping to Norway takes 4 days.\n")
    (bot / "knowledge/machines/grinder.md").write_text("# Grinder\n\nThe grinder has 20 settings now.\n")
    result = runner.invoke(app, ["ingest", "--bot", str(bot), str(bot / "knowledge/shop")])
    assert result.exit_code == 0, result.output
    assert "added" in result.stdout and "unchanged" in result.stdout
    report = json.loads(runner.invoke(app, ["ingest", "--bot", str(bot), "--json", "machines"]).stdout)
    assert report["updated"] == 1 and report["unchanged"] == 2  # machines/ only: shop/ was done above


def test_ingest_reports_broken_files_by_name(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> None:
    path = make_bot(tmp_path, {"good.md": "# Good\n\nA good article.\n", "bad.csv": "x,y\n1,2\n"})
    result = runner.invoke(app, ["ingest", "--bot", str(path), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["added"] == 1 and [f["source"] for f in report["failed"]] == ["bad.csv"]


def test_search_json(bot: Path) -> None:
    result = runner.invoke(app, ["search", "how do I descale the machine", "--bot", str(bot), "--json", "--k", "3"])
    assert result.exit_code == 0, result.output
    passages = json.loads(result.stdout)
    assert 1 <= len(passages) <= 3
    assert {"source", "title", "section", "score", "text"} <= set(passages[0])
    assert passages[0]["source"] == "machines/descaling.md"
    for mode in ("vector", "lexical"):
        result = runner.invoke(app, ["search", "descale", "--bot", str(bot), "--json", "--mode", mode])
        assert result.exit_code == 0 and isinstance(json.loads(result.stdout), list)


def test_search_text_output_and_nothing_relevant(bot: Path) -> None:
    result = runner.invoke(app, ["search", "Apple Pay", "--bot", str(bot)])
    assert result.exit_code == 0 and "shop/payments.txt" in result.stdout
    result = runner.invoke(app, ["search", "who painted the Mona Lisa", "--bot", str(bot), "--json"])
    assert json.loads(result.stdout) == []


def test_kb_stats_json(bot: Path) -> None:
    result = runner.invoke(app, ["kb", "stats", "--bot", str(bot), "--json"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert stats["sources"] == len(CORPUS) and stats["chunks"] > 0
    assert stats["formats"] == {"csv": 1, "md": 6, "txt": 1}
    assert stats["model"] == "all-MiniLM-L6-v2" and stats["dimension"] == 384
    assert str(bot / "data" / "chroma") in stats["index"] and stats["last_ingest"]["report"]
    assert runner.invoke(app, ["kb", "stats", "--bot", str(bot)]).exit_code == 0


def test_eval_retrieval_json(bot: Path, tmp_path: Path) -> None:
    questions = tmp_path / "questions.jsonl"
    lines = [
        {"id": "q1", "kind": "direct", "question": "How do I descale my machine?", "expected_sources": ["machines/descaling.md"]},
        {"id": "q2", "kind": "direct", "question": "Do gift cards expire?", "expected_sources": ["faq.csv#gift-cards"]},
        {"id": "q3", "kind": "multi_turn", "question": "and to Mexico?", "history": ["How long is shipping to Canada?"],
         "expected_sources": ["shop/shipping.md"]},
        {"id": "q4", "kind": "out_of_scope", "question": "Who won the 2018 world cup?", "expected_sources": []},
    ]
    questions.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    result = runner.invoke(app, ["eval-retrieval", str(questions), "--bot", str(bot), "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert set(metrics) == {"n", "hit@1", "hit@3", "hit@5", "mrr"} and metrics["n"] == 3
    assert metrics["hit@5"] == 1.0
    table = runner.invoke(app, ["eval-retrieval", str(questions), "--bot", str(bot), "--mode", "lexical"])
    assert table.exit_code == 0 and "multi_turn" in table.stdout


def test_missing_knowledge_folder_is_one_clear_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["ingest", "--bot", str(tmp_path), "--json"])
    assert result.exit_code == 2
    assert "knowledge folder not found" in result.stderr and "Traceback" not in result.output


def test_bad_bot_yaml_exits_2(tmp_path: Path) -> None:
    (tmp_path / "bot.yaml").write_text("knowledge:\n  top_kk: 3\n")
    result = runner.invoke(app, ["search", "x", "--bot", str(tmp_path)])
    assert result.exit_code == 2 and "top_kk" in result.stderr


def test_model_mismatch_exits_2_with_the_fix(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> None:
    path = make_bot(tmp_path, {"a.md": "# A\n\nAlpha.\n"})
    VectorStore.open(model_id="some-other-model", dimension=768, path=path / "data" / "chroma")
    result = runner.invoke(app, ["search", "alpha", "--bot", str(path)])
    assert result.exit_code == 2
    assert "some-other-model" in result.stderr and "botkit ingest --rebuild" in result.stderr
    assert runner.invoke(app, ["ingest", "--bot", str(path), "--rebuild", "--json"]).exit_code == 0


def test_unknown_mode_exits_2(bot: Path) -> None:
    result = runner.invoke(app, ["search", "x", "--bot", str(bot), "--mode", "fuzzy"])
    assert result.exit_code == 2 and "known modes" in result.stderr
