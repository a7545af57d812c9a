"""Finding and reading source files: discovery, size limits, encodings, binary files."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from knowledge.errors import KnowledgeConfigError, SourceError
from knowledge.settings import KnowledgeSettings
from knowledge.sources import SUPPORTED_SUFFIXES, discover, parse, read
from knowledge.types import RawSource, SourceRef


def _write(root: Path, name: str, data: bytes | str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def test_discover_walks_the_folder_recursively_and_skips_hidden_and_unsupported(tmp_path: Path) -> None:
    kb = tmp_path / "knowledge"
    for name in ["b.md", "a.txt", "guides/setup.html", "guides/deep/faq.csv", "manual.PDF", "data.yml"]:
        _write(kb, name, "x")
    for name in [".secret.md", ".git/config.md", "guides/.drafts/wip.md", "image.png", "notes.docx", "Makefile"]:
        _write(kb, name, "x")
    refs, failures = discover(KnowledgeSettings(), tmp_path)
    assert failures == []
    assert [ref.name for ref in refs] == [
        "a.txt", "b.md", "data.yml", "guides/deep/faq.csv", "guides/setup.html", "manual.PDF",
    ]
    assert all(ref.kind == "file" and Path(ref.location).is_absolute() for ref in refs)
    assert Path(refs[0].location) == (kb / "a.txt").resolve()


def test_discover_accepts_an_absolute_path(tmp_path: Path) -> None:
    _write(tmp_path / "docs", "x.md", "# X")
    refs, _ = discover(KnowledgeSettings(path=str(tmp_path / "docs")), Path("/nonexistent"))
    assert [ref.name for ref in refs] == ["x.md"]


def test_missing_knowledge_folder_is_a_config_error_naming_the_path(tmp_path: Path) -> None:
    with pytest.raises(KnowledgeConfigError, match=r"not found: .*kb-missing.*knowledge\.path"):
        discover(KnowledgeSettings(path="kb-missing"), tmp_path)


def test_knowledge_path_that_is_a_file_is_a_config_error(tmp_path: Path) -> None:
    _write(tmp_path, "kb.md", "# not a folder")
    with pytest.raises(KnowledgeConfigError, match="knowledge folder is not a folder"):
        discover(KnowledgeSettings(path="kb.md"), tmp_path)


def test_default_folder_may_be_absent_when_only_urls_are_configured(tmp_path: Path) -> None:
    refs, failures = discover(KnowledgeSettings(urls=["https://example.invalid/help"]), tmp_path)
    assert [ref.name for ref in refs] == ["https://example.invalid/help"] and failures == []


def test_supported_suffixes() -> None:
    expected = {".md", ".markdown", ".txt", ".html", ".htm", ".pdf", ".csv", ".json", ".yaml", ".yml"}
    assert expected == SUPPORTED_SUFFIXES


def test_read_fingerprints_the_bytes(tmp_path: Path) -> None:
    path = _write(tmp_path, "a.md", "# Hello\n")
    raw = read(SourceRef("a.md", str(path)), KnowledgeSettings())
    assert raw.data == b"# Hello\n"
    assert raw.fingerprint == hashlib.sha256(b"# Hello\n").hexdigest()


def test_a_50_mb_file_is_refused_from_its_size_without_reading_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "huge.txt"
    with path.open("wb") as handle:
        handle.truncate(50 * 1024 * 1024)  # sparse: takes no disk space
    opened: list[Path] = []
    original_open = Path.open
    monkeypatch.setattr(Path, "open", lambda self, *a, **k: opened.append(self) or original_open(self, *a, **k))
    with pytest.raises(SourceError, match=r"file is 50\.0 MB, over the 20 MB limit \(knowledge\.max_file_mb\)"):
        read(SourceRef("huge.txt", str(path)), KnowledgeSettings())
    assert opened == []


def test_a_vanished_file_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="file not found"):
        read(SourceRef("gone.md", str(tmp_path / "gone.md")), KnowledgeSettings())


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("empty.md", b"", "file is empty"),
        ("blank.txt", b"  \n\t\n", "file is empty"),
        ("empty.csv", b"", "file is empty"),
        ("empty.pdf", b"", "file is empty"),
        ("empty.html", b"", "file is empty"),
        ("nul.txt", b"hello\x00\x01\x02world", "binary file posing as text"),
        ("photo.txt", b"\x89PNG\r\n\x1a\n" + bytes(range(256)), r"binary file \(a PNG image\)"),
        ("latin1.txt", "Café au lait\n".encode("cp1252"), r"not UTF-8 text: undecodable byte 0xe9 at byte offset 3"),
        ("latin1.md", b"# Title\n\nna\xefve", r"byte offset 11; re-save the file as UTF-8"),
    ],
)
def test_unreadable_text_is_refused_with_a_reason(
    tmp_path: Path, raw_file: Callable[..., RawSource], name: str, data: bytes, reason: str
) -> None:
    raw = raw_file(_write(tmp_path, name, data))
    with pytest.raises(SourceError, match=reason):
        parse(raw)


def test_utf8_bom_and_utf16_with_bom_are_decoded(tmp_path: Path, raw_file: Callable[..., RawSource]) -> None:
    bom = parse(raw_file(_write(tmp_path, "bom.md", "\ufeff# Crème brûlée\n\nYum.".encode())))
    assert bom[0].title == "Crème brûlée"
    wide = parse(raw_file(_write(tmp_path, "wide.txt", "Übersicht\nDetails".encode("utf-16"))))
    assert wide[0].title == "Übersicht" and "Details" in wide[0].text
