"""FAQ sources: question/answer pairs from CSV, JSON or YAML; one Document per pair.

Accepted shapes: a CSV with ``question`` and ``answer`` columns (header case-insensitive;
optional ``id``, ``url``, ``tags``); JSON or YAML holding a list of objects with
``question``/``answer`` keys, or an object ``{"faq": [...]}`` with such a list.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from knowledge.errors import SourceError
from knowledge.sources.decoding import decode_text
from knowledge.types import Document, RawSource

EXPECTED_SHAPE = 'a list of {"question": ..., "answer": ...} objects, or {"faq": [that list]}'
_OPTIONAL = ("id", "url", "tags")
_TOO_DEEP = f"nested too deeply to be an FAQ file; expected {EXPECTED_SHAPE}"


def _cell(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _tags(value: Any) -> str:
    """Tags as one comma-separated string (vector-store metadata must be scalar)."""
    items = value if isinstance(value, list) else re.split(r"[,;|]", _cell(value))
    return ",".join(tag for tag in (_cell(item) for item in items) if tag)


def _documents(raw: RawSource, rows: Iterable[tuple[int, Mapping[str, Any]]], unit: str) -> list[Document]:
    """Validate (number, row) pairs and turn each into a faq Document; blank rows are skipped."""
    name = raw.ref.name
    documents: list[Document] = []
    seen: dict[str, int] = {}
    for number, row in rows:
        question, answer = _cell(row.get("question")), _cell(row.get("answer"))
        if not question and not answer and not any(_cell(row.get(key)) for key in _OPTIONAL):
            continue
        if not question or not answer:
            missing = "question" if not question else "answer"
            raise SourceError(f"{unit} {number}: the {missing} is empty; fill it in or delete the {unit}")
        key = _cell(row.get("id")) or str(number)
        if key in seen:
            raise SourceError(f"{unit}s {seen[key]} and {number} share the id {key!r}; ids must be unique")
        seen[key] = number
        metadata = {"question": question, "answer": answer}
        if tags := _tags(row.get("tags")):
            metadata["tags"] = tags
        documents.append(
            Document(
                source=f"{name}#{key}", origin=name, title=question, text=answer, format="faq",
                url=_cell(row.get("url")) or (raw.ref.location if raw.ref.kind == "url" else None),
                metadata=metadata,
            )
        )
    if not documents:
        raise SourceError("no question/answer pairs found; add at least one")
    return documents


def parse_csv(raw: RawSource) -> list[Document]:
    """FAQ pairs from a CSV with question and answer columns."""
    text = decode_text(raw.data)
    # Sniff only the delimiter, from the header line; quoting follows RFC 4180 (doubled
    # quotes inside quoted fields), which the sniffer cannot infer from a header.
    try:
        delimiter = csv.Sniffer().sniff(text.split("\n", 1)[0], delimiters=",;\t").delimiter
    except csv.Error:
        delimiter = ","
    reader = csv.reader(io.StringIO(text), csv.excel, delimiter=delimiter, strict=True)
    try:
        table = list(reader)
    except csv.Error as exc:
        raise SourceError(f"invalid CSV at line {reader.line_num}: {exc}; check the quoting") from exc
    header = [_cell(column).lower() for column in table[0]]
    if "question" not in header or "answer" not in header:
        found = ", ".join(repr(column) for column in header if column) or "none"
        raise SourceError(f"CSV needs 'question' and 'answer' columns in its header row; found: {found}")
    rows = ((number, dict(zip(header, cells, strict=False))) for number, cells in enumerate(table[1:], start=1))
    return _documents(raw, rows, "row")


def _items(data: Any) -> list[Any]:
    if isinstance(data, Mapping) and isinstance(data.get("faq"), list):
        data = data["faq"]
    if not isinstance(data, list):
        raise SourceError(f"not an FAQ file: expected {EXPECTED_SHAPE}; found a {type(data).__name__}")
    return data


def _rows(items: list[Any]) -> list[tuple[int, Mapping[str, Any]]]:
    rows: list[tuple[int, Mapping[str, Any]]] = []
    for number, item in enumerate(items, start=1):
        if not isinstance(item, Mapping) or not {"question", "answer"} & {str(k).lower() for k in item}:
            raise SourceError(
                f"not an FAQ file: item {number} is not a question/answer object; expected {EXPECTED_SHAPE}"
            )
        rows.append((number, {str(key).lower(): value for key, value in item.items()}))
    return rows


def parse_json(raw: RawSource) -> list[Document]:
    """FAQ pairs from a JSON list (or ``{"faq": [...]}``)."""
    try:
        data = json.loads(decode_text(raw.data))
    except json.JSONDecodeError as exc:
        raise SourceError(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
    except RecursionError as exc:
        raise SourceError(_TOO_DEEP) from exc
    return _documents(raw, _rows(_items(data)), "item")


def parse_yaml(raw: RawSource) -> list[Document]:
    """FAQ pairs from a YAML list (or a mapping with a ``faq`` list)."""
    try:
        data = yaml.safe_load(decode_text(raw.data))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SourceError(f"invalid YAML{where}: {problem}") from exc
    except RecursionError as exc:
        raise SourceError(_TOO_DEEP) from exc
    return _documents(raw, _rows(_items(data)), "item")
