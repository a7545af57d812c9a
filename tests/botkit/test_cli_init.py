"""`botkit init` and the CLI's front door."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from botkit.cli import app
from botkit.config import load_config

runner = CliRunner()


def test_help_lists_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("init", "ingest", "search"):
        assert command in result.output


def test_init_creates_a_valid_bot(tmp_path: Path) -> None:
    target = tmp_path / "acme"
    result = runner.invoke(app, ["init", str(target), "--name", "Acme Help"])
    assert result.exit_code == 0, result.output
    assert (target / "knowledge").is_dir()
    assert any((target / "knowledge").iterdir())
    config = load_config(target, environ={})
    assert config.name == "Acme Help"
    assert config.web.public_key and config.web.public_key.startswith("pk_")


def test_init_refuses_to_overwrite(tmp_path: Path) -> None:
    assert runner.invoke(app, ["init", str(tmp_path)]).exit_code == 0
    result = runner.invoke(app, ["init", str(tmp_path)])
    assert result.exit_code == 2
    assert "already exists" in result.output
    assert runner.invoke(app, ["init", str(tmp_path), "--force"]).exit_code == 0


def test_importing_botkit_does_not_import_torch() -> None:
    code = "import sys, botkit, knowledge, botkit.cli; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
