"""`botkit ask` and `botkit chat` end to end (in-process CLI, real index, real store)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from botkit.cli import app

runner = CliRunner()


@pytest.fixture
def bot_dir(indexed_bot_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "bot"
    shutil.copytree(indexed_bot_dir, target)
    return target


def test_ask_json_prints_the_reply_object(bot_dir: Path) -> None:
    result = runner.invoke(app, ["ask", "Can I get a refund?", "--bot", str(bot_dir), "--json"], env={})
    assert result.exit_code == 0, result.output
    reply = json.loads(result.stdout)
    assert {"text", "citations", "backend", "handoff", "abstained"} <= reply.keys()
    assert "30 days" in reply["text"]
    assert reply["citations"][0]["source"] == "faq.csv#refund"
    assert {"source", "title", "snippet"} <= reply["citations"][0].keys()


def test_ask_continues_a_conversation(bot_dir: Path) -> None:
    args = ["ask", "--bot", str(bot_dir), "--conversation", "cli-conv", "--json"]
    assert runner.invoke(app, [*args[:1], "I want to talk to a human", *args[1:]], env={}).exit_code == 0
    second = json.loads(runner.invoke(app, [*args[:1], "hello?", *args[1:]], env={}).stdout)
    assert second["handoff"] is True and second["text"] == ""


def test_openai_without_key_is_one_clear_line(bot_dir: Path) -> None:
    env = {"BOTKIT_BACKENDS": '["openai:gpt-4o-mini"]', "OPENAI_API_KEY": "", "OPENAI_BASE_URL": ""}
    result = runner.invoke(app, ["ask", "hi", "--bot", str(bot_dir)], env=env)
    assert result.exit_code == 2
    assert "OPENAI_API_KEY" in result.output and "Traceback" not in result.output


def test_missing_local_model_is_one_clear_line(bot_dir: Path, tmp_path: Path) -> None:
    env = {"BOTKIT_BACKENDS": json.dumps([f"transformers:{tmp_path / 'no-such-model'}"])}
    result = runner.invoke(app, ["ask", "hi", "--bot", str(bot_dir)], env=env)
    assert result.exit_code == 2
    assert "no-such-model" in result.output and "Traceback" not in result.output


def test_unreachable_server_fails_the_command_with_the_reason(bot_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    env = {"BOTKIT_BACKENDS": '["openai:gpt-4o-mini"]', "OPENAI_BASE_URL": "http://127.0.0.1:1/v1", "BOTKIT_OPENAI__TIMEOUT_S": "2"}
    result = runner.invoke(app, ["ask", "How do I export my data?", "--bot", str(bot_dir)], env=env)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert any("openai:gpt-4o-mini" in record.getMessage() for record in caplog.records)


def test_bad_config_names_the_key(bot_dir: Path) -> None:
    (bot_dir / "bot.yaml").write_text("name: x\nbackend: extractive\n", encoding="utf-8")
    result = runner.invoke(app, ["ask", "hi", "--bot", str(bot_dir)], env={})
    assert result.exit_code == 2
    assert "backend" in result.output and "bot.yaml" in result.output


def test_chat_streams_answers(bot_dir: Path) -> None:
    result = runner.invoke(app, ["chat", "--bot", str(bot_dir)], input="How do I export my data?\n\n", env={})
    assert result.exit_code == 0, result.output
    assert "Settings > Data > Export" in result.output
    assert "faq.csv#export" in result.output
