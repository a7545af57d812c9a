"""Chunking: section paths, sizes, FAQ pairs, stable ids."""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import pytest

from knowledge.chunking import chunk_documents
from knowledge.errors import KnowledgeConfigError
from knowledge.settings import KnowledgeSettings
from knowledge.sources import discover, parse, read
from knowledge.types import Document

GUIDE = """# Account guide

Welcome to the account guide.

## Passwords

Use a long password.

### Resetting

Click "Forgot password" on the login page.

```
# this is a comment in code, not a heading
```

## Billing

### Invoices

Invoices are emailed monthly.
"""


def _md(text: str, title: str = "Account guide", source: str = "guide.md") -> Document:
    return Document(source=source, origin=source, title=title, text=text, format="markdown")


def test_markdown_sections_become_heading_paths_without_the_title_h1() -> None:
    chunks = chunk_documents([_md(GUIDE)], chunk_size=1000, chunk_overlap=100)
    assert [(c.section, c.text) for c in chunks] == [
        ("", "Welcome to the account guide."),
        ("Passwords", "Use a long password."),
        ("Passwords > Resetting",
         'Click "Forgot password" on the login page.\n\n```\n# this is a comment in code, not a heading\n```'),
        ("Billing > Invoices", "Invoices are emailed monthly."),
    ]
    assert all(c.title == "Account guide" and c.kind == "article" for c in chunks)
    assert chunks[2].embed_text.startswith("Account guide > Passwords > Resetting\nClick")
    assert chunks[0].embed_text == "Account guide\nWelcome to the account guide."
    assert [c.ordinal for c in chunks] == [0, 1, 2, 3]


def test_an_h1_that_is_not_the_title_stays_in_the_path() -> None:
    doc = _md("# Part one\n\n## Setup\n\nDo it.", title="Manual")
    [chunk] = chunk_documents([doc], chunk_size=200, chunk_overlap=0)
    assert chunk.section == "Part one > Setup"


def test_long_sections_are_split_within_size_and_overlap() -> None:
    sentences = " ".join(f"Sentence number {n} explains a detail." for n in range(120))
    doc = _md(f"# Guide\n\n## Long part\n\n{sentences}", title="Guide")
    chunks = chunk_documents([doc], chunk_size=300, chunk_overlap=60)
    assert len(chunks) > 10
    assert all(len(c.text) <= 300 and c.section == "Long part" for c in chunks)
    for before, after in itertools.pairwise(chunks):
        assert after.text[:20] in before.text  # consecutive chunks share the overlap
    bare = chunk_documents([doc], chunk_size=300, chunk_overlap=0)
    assert " ".join(c.text for c in bare) == sentences  # no overlap: nothing repeated, nothing lost


def test_text_documents_are_split_by_size_only() -> None:
    text = "\n\n".join(f"Paragraph {n}. " + "word " * 30 for n in range(10))
    doc = Document(source="notes.txt", origin="notes.txt", title="Notes", text=text, format="text")
    chunks = chunk_documents([doc], chunk_size=200, chunk_overlap=20)
    assert len(chunks) >= 10 and all(len(c.text) <= 200 and c.section == "" for c in chunks)
    assert chunks[0].embed_text.startswith("Notes\nParagraph 0.")


def test_faq_pairs_are_one_chunk_each_with_question_and_answer() -> None:
    docs = [
        Document(source="faq.csv#reset", origin="faq.csv", title="How do I reset?", text="Use the link." * 300,
                 format="faq", url="https://help.example/reset", metadata={"tags": "account"}),
        Document(source="faq.csv#2", origin="faq.csv", title="Hours?", text="9-5", format="faq"),
    ]
    chunks = chunk_documents(docs, chunk_size=100, chunk_overlap=10)
    assert [c.source for c in chunks] == ["faq.csv#reset", "faq.csv#2"]
    first = chunks[0]
    assert first.kind == "faq" and first.embed_text == "How do I reset?" and first.title == "How do I reset?"
    assert first.text == "Q: How do I reset?\nA: " + "Use the link." * 300
    assert first.metadata == {"tags": "account", "question": "How do I reset?", "answer": "Use the link." * 300}
    assert first.url == "https://help.example/reset" and first.origin == "faq.csv" and first.ordinal == 0


def test_ids_are_stable_and_follow_the_documented_formula(tmp_path: Path) -> None:
    kb = tmp_path / "knowledge"
    kb.mkdir()
    (kb / "guide.md").write_text(GUIDE)
    (kb / "faq.csv").write_text("id,question,answer\nreset,How?,Like this.\n,Why?,Because.\n")

    def run() -> list[str]:
        settings = KnowledgeSettings()
        refs, _ = discover(settings, tmp_path)
        docs = [doc for ref in refs for doc in parse(read(ref, settings))]
        chunks = chunk_documents(docs, chunk_size=settings.chunk_size, chunk_overlap=settings.chunk_overlap)
        return [c.id for c in chunks]

    first, second = run(), run()
    assert first == second and len(set(first)) == len(first) == 6
    chunks = chunk_documents([_md(GUIDE)], chunk_size=1000, chunk_overlap=0)
    expected = hashlib.sha256(f"guide.md\x000\x00{chunks[0].text}".encode()).hexdigest()[:32]
    assert chunks[0].id == expected


def test_ordinals_count_across_documents_of_one_source() -> None:
    pages = [Document(source="m.pdf", origin="m.pdf", title="M", text=f"Page {n}", format="text",
                      metadata={"page": n}) for n in (1, 2)]
    chunks = chunk_documents(pages, chunk_size=100, chunk_overlap=0)
    assert [(c.ordinal, c.metadata["page"]) for c in chunks] == [(0, 1), (1, 2)]
    assert chunks[0].id != chunks[1].id


def test_empty_and_whitespace_chunks_are_dropped() -> None:
    docs = [_md("# Title\n\n## Empty\n\n## Also empty\n   \n"),
            Document(source="b.txt", origin="b.txt", title="B", text="   \n\n ", format="text")]
    assert chunk_documents(docs, chunk_size=100, chunk_overlap=0) == []


def test_overlap_not_below_size_is_a_config_error() -> None:
    with pytest.raises(KnowledgeConfigError, match=r"chunk_overlap \(500\) must be .*chunk_size \(400\)"):
        chunk_documents([], chunk_size=400, chunk_overlap=500)
