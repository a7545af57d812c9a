"""Embedded mode is one process: ``botkit serve --workers N`` (N > 1) on SQLite or embedded
Chroma is refused, naming the scale-out settings (a real ``botkit serve`` process)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.processes import QUIET_ENV, REPO

pytestmark = pytest.mark.faults


def serve(bot: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "botkit.cli", "serve", "--bot", str(bot), "--port", "1", *args],
        capture_output=True, text=True, timeout=120, cwd=REPO, check=False, env={**os.environ, **QUIET_ENV, **(env or {})})


@pytest.mark.parametrize(("env", "missing", "present"), [
    ({}, ["database_url", "knowledge.chroma_url"], []),
    ({"BOTKIT_DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/none"}, ["knowledge.chroma_url"], ["database_url"]),
    ({"BOTKIT_KNOWLEDGE__CHROMA_URL": "http://127.0.0.1:1"}, ["database_url"], ["knowledge.chroma_url"]),
], ids=["sqlite+embedded", "embedded-chroma", "sqlite"])
def test_workers_refused_in_embedded_mode(tmp_path: Path, env: dict[str, str], missing: list[str],
                                          present: list[str]) -> None:
    (tmp_path / "bot.yaml").write_text("name: embedded\n", encoding="utf-8")
    result = serve(tmp_path, "--workers", "2", env=env)
    message = " ".join(result.stderr.split())
    assert result.returncode == 2, result.stderr
    assert "--workers 2 needs shared state" in message
    for key in missing:
        assert key in message
    for key in present:
        assert f"set {key}" not in message
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data" / "chroma").exists()  # refused before opening anything
