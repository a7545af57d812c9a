"""``botkit serve``: scale-out checks and how it hands the app to uvicorn."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from botkit.config import load_config


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, dict[str, Any]]]:
    """Capture uvicorn.run instead of serving; make ingestion a no-op."""
    import uvicorn

    from botkit.bot import Bot

    calls: list[tuple[Any, dict[str, Any]]] = []

    async def no_ingest(self: Bot) -> None:
        return None

    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append((app, kwargs)))
    monkeypatch.setattr(Bot, "ingest_if_needed", no_ingest)
    monkeypatch.delenv("BOTKIT_BOT", raising=False)
    return calls


def _cli() -> Any:
    from botkit.cli import app

    return app


def test_scale_out_problem_names_the_settings(tmp_path: Path) -> None:
    from botkit.commands.serve import scale_out_problem

    config = load_config(tmp_path, environ={})
    assert scale_out_problem(config, 1) is None
    problem = scale_out_problem(config, 2)
    assert problem and "database_url" in problem and "knowledge.chroma_url" in problem
    pg_only = load_config(tmp_path, environ={"BOTKIT_DATABASE_URL": "postgresql://u@127.0.0.1/db"})
    problem = scale_out_problem(pg_only, 4)
    assert problem and "database_url" not in problem and "knowledge.chroma_url" in problem
    both = load_config(tmp_path, environ={"BOTKIT_DATABASE_URL": "postgresql://u@127.0.0.1/db",
                                          "BOTKIT_KNOWLEDGE__CHROMA_URL": "http://127.0.0.1:8001"})
    assert scale_out_problem(both, 4) is None


def test_serve_refuses_workers_on_sqlite(tmp_path: Path, served: list[Any]) -> None:
    (tmp_path / "bot.yaml").write_text("name: t\n", encoding="utf-8")
    result = CliRunner().invoke(_cli(), ["serve", "--bot", str(tmp_path), "--workers", "2"])
    assert result.exit_code == 2
    output = " ".join(result.output.split())
    assert "database_url" in output and "knowledge.chroma_url" in output
    assert served == []


def test_serve_one_worker_builds_the_app(tmp_path: Path, served: list[Any]) -> None:
    from fastapi import FastAPI

    (tmp_path / "bot.yaml").write_text("name: t\n", encoding="utf-8")
    result = CliRunner().invoke(_cli(), ["serve", "--bot", str(tmp_path), "--port", "8123"])
    assert result.exit_code == 0, result.output
    (app, options), = served
    assert isinstance(app, FastAPI)
    assert options["host"] == "127.0.0.1" and options["port"] == 8123 and "workers" not in options
    assert (tmp_path / "data" / "secret.key").exists()


def test_serve_workers_use_the_app_factory(tmp_path: Path, served: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "bot.yaml").write_text(
        "name: t\ndatabase_url: postgresql://u@127.0.0.1/db\nknowledge:\n  chroma_url: http://127.0.0.1:8001\n",
        encoding="utf-8")
    monkeypatch.setitem(os.environ, "BOTKIT_BOT", "")  # restored after the test
    result = CliRunner().invoke(_cli(), ["serve", "--bot", str(tmp_path), "--workers", "3"])
    assert result.exit_code == 0, result.output
    (target, options), = served
    assert target == "connectors.web.app:app_from_env"
    assert options["factory"] is True and options["workers"] == 3
    assert os.environ["BOTKIT_BOT"] == str(tmp_path.resolve())


def test_serve_settles_the_heap_once_started(tmp_path: Path, served: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """The serving app freezes the started bot's objects out of full GC passes (botkit.heap)."""
    import connectors.web.app as web_app

    made: list[dict[str, Any]] = []
    real = web_app.create_app

    def recording(bot: Any, **kwargs: Any) -> Any:
        made.append(kwargs)
        return real(bot, **kwargs)

    monkeypatch.setattr(web_app, "create_app", recording)
    (tmp_path / "bot.yaml").write_text("name: t\n", encoding="utf-8")
    result = CliRunner().invoke(_cli(), ["serve", "--bot", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert made == [{"ingest_on_start": False, "settle_heap": True}]
