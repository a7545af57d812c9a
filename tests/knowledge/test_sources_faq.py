"""FAQ sources: CSV, JSON and YAML question/answer pairs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from knowledge.errors import SourceError
from knowledge.sources import parse
from knowledge.types import Document, RawSource


def _parse(tmp_path: Path, raw_file: Callable[..., RawSource], name: str, text: str) -> list[Document]:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return parse(raw_file(path))


def test_csv_pairs_become_one_document_each(tmp_path: Path, raw_file: Callable[..., RawSource]) -> None:
    text = (
        "ID,Question,Answer,URL,Tags\n"
        "reset-password,How do I reset my password?,\"Open Settings, then Security.\",https://help.example/reset,account;login\n"
        ",,,,\n"
        ",Do you ship abroad?,\"Yes, to 40 countries.\nSee the list.\",,\n"
    )
    docs = _parse(tmp_path, raw_file, "faq.csv", text)
    assert [doc.source for doc in docs] == ["faq.csv#reset-password", "faq.csv#3"]
    first, second = docs
    assert (first.title, first.text, first.format, first.origin) == (
        "How do I reset my password?", "Open Settings, then Security.", "faq", "faq.csv")
    assert first.url == "https://help.example/reset" and first.metadata["tags"] == "account,login"
    assert second.text == "Yes, to 40 countries.\nSee the list." and second.url is None


def test_csv_semicolon_delimited_is_sniffed(tmp_path: Path, raw_file: Callable[..., RawSource]) -> None:
    [doc] = _parse(tmp_path, raw_file, "faq.csv", "question;answer\nOpening hours?;9 to 5, Monday to Friday\n")
    assert doc.text == "9 to 5, Monday to Friday"


def test_csv_missing_columns_names_the_columns_found(tmp_path: Path, raw_file: Callable[..., RawSource]) -> None:
    with pytest.raises(SourceError, match=r"needs 'question' and 'answer' columns.*found: 'q', 'reply'"):
        _parse(tmp_path, raw_file, "faq.csv", "q,reply\nhi,there\n")


def test_csv_row_with_an_empty_answer_fails_naming_the_row(tmp_path: Path, raw_file: Callable[..., RawSource]) -> None:
    with pytest.raises(SourceError, match="row 2: the answer is empty"):
        _parse(tmp_path, raw_file, "faq.csv", "question,answer\nA?,Yes\nB?,\n")


def test_duplicate_ids_are_refused(tmp_path: Path, raw_file: Callable[..., RawSource]) -> None:
    with pytest.raises(SourceError, match="rows 1 and 2 share the id 'x'"):
        _parse(tmp_path, raw_file, "faq.csv", "id,question,answer\nx,A?,a\nx,B?,b\n")


def test_header_only_csv_has_no_pairs(tmp_path: Path, raw_file: Callable[..., RawSource]) -> None:
    with pytest.raises(SourceError, match="no question/answer pairs"):
        _parse(tmp_path, raw_file, "faq.csv", "question,answer\n\n")


def test_json_list_and_faq_object(tmp_path: Path, raw_file: Callable[..., RawSource]) -> None:
    text = '[{"question": "Q1?", "answer": "A1"}, {"id": 7, "Question": "Q2?", "Answer": "A2", "tags": ["x", "y"]}]'
    docs = _parse(tmp_path, raw_file, "faq.json", text)
    assert [(d.source, d.title, d.text) for d in docs] == [("faq.json#1", "Q1?", "A1"), ("faq.json#7", "Q2?", "A2")]
    assert docs[1].metadata["tags"] == "x,y"
    [doc] = _parse(tmp_path, raw_file, "wrapped.json", '{"faq": [{"question": "Q?", "answer": "A"}]}')
    assert doc.source == "wrapped.json#1"


def test_yaml_list_and_faq_object(tmp_path: Path, raw_file: Callable[..., RawSource]) -> None:
    docs = _parse(tmp_path, raw_file, "faq.yaml", "- question: Where are you?\n  answer: Berlin\n  id: where\n")
    assert [(d.source, d.text) for d in docs] == [("faq.yaml#where", "Berlin")]
    docs = _parse(tmp_path, raw_file, "faq.yml", "faq:\n  - question: Q?\n    answer: |\n      Multi\n      line\n")
    assert docs[0].text == "Multi\nline"


@pytest.mark.parametrize(
    ("name", "text", "reason"),
    [
        ("bad.json", '[{"question": "Q?", "answer": "A"', r"invalid JSON at line 1 column \d+"),
        ("bad.yaml", "- question: [unclosed\n  answer: x\n", r"invalid YAML at line \d+ column \d+"),
        ("config.json", '{"name": "acme", "port": 8080}', r"not an FAQ file: expected a list of .*found a dict"),
        ("config.yml", "name: acme\n", r"not an FAQ file: expected .*\{\"faq\": \[that list\]\}"),
        ("numbers.json", "[1, 2, 3]", r"item 1 is not a question/answer object"),
        ("scalar.yaml", "just a string\n", r"not an FAQ file: expected .* found a str"),
        ("missing.json", '[{"question": "Q?"}]', r"item 1: the answer is empty"),
        ("deep.json", "[" * 50_000 + "]" * 50_000, r"nested too deeply to be an FAQ file"),
        ("quotes.csv", 'question,answer\n"unterminated,quote\n', r"invalid CSV at line 2: .*check the quoting"),
    ],
)
def test_bad_json_and_yaml_are_refused(
    tmp_path: Path, raw_file: Callable[..., RawSource], name: str, text: str, reason: str
) -> None:
    with pytest.raises(SourceError, match=reason):
        _parse(tmp_path, raw_file, name, text)


def test_csv_doubled_quotes_inside_quoted_fields(tmp_path: Path, raw_file: Callable[..., RawSource]) -> None:
    """RFC 4180 quoting: a header without quotes must not make the parser forget "" escapes."""
    text = (
        'id,question,answer\n'
        'reset,"How do I reset my ""password""?","Click ""Forgot password?"" on the login page."\n'
    )
    (doc,) = _parse(tmp_path, raw_file, "faq.csv", text)
    assert doc.title == 'How do I reset my "password"?'
    assert doc.text == 'Click "Forgot password?" on the login page.'
