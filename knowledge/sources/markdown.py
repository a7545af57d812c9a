"""Markdown and plain-text sources."""

from __future__ import annotations

import re

import yaml

from knowledge.sources.decoding import decode_text, humanise, stem_of
from knowledge.types import Document, DocumentFormat, RawSource

_FRONT_MATTER = re.compile(r"\A---\n(.*?)\n(?:---|\.\.\.)\n", re.DOTALL)
_FENCE = re.compile(r"^\s*(```|~~~)")
_H1 = re.compile(r"^#\s+(.+?)\s*#*\s*$")
_MAX_TEXT_TITLE = 80


def _split_front_matter(text: str) -> tuple[str, str | None]:
    """Strip a leading YAML front-matter block; return (body, its ``title`` if any)."""
    match = _FRONT_MATTER.match(text)
    if not match:
        return text, None
    try:
        meta = yaml.safe_load(match.group(1))
    except yaml.YAMLError:
        return text, None  # not front matter after all: keep the text as written
    title = meta.get("title") if isinstance(meta, dict) else None
    return text[match.end():], str(title).strip() if title else None


def first_h1(text: str) -> str | None:
    """The text of the first ``# `` heading outside code fences, or None."""
    in_fence = False
    for line in text.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence and (match := _H1.match(line)):
            return match.group(1).strip()
    return None


def parse_markdown(raw: RawSource) -> list[Document]:
    """One markdown Document; title from front matter, the first H1, or the file name."""
    body, title = _split_front_matter(decode_text(raw.data))
    title = title or first_h1(body) or humanise(stem_of(raw.ref.name))
    return [_document(raw, title, body.strip(), "markdown")]


def parse_text(raw: RawSource) -> list[Document]:
    """One text Document; title is the first line when short, else the file name."""
    text = decode_text(raw.data).strip()
    first_line = text.splitlines()[0].strip()
    title = first_line if len(first_line) <= _MAX_TEXT_TITLE else humanise(stem_of(raw.ref.name))
    return [_document(raw, title, text, "text")]


def _document(raw: RawSource, title: str, text: str, fmt: DocumentFormat) -> Document:
    url = raw.ref.location if raw.ref.kind == "url" else None
    return Document(source=raw.ref.name, origin=raw.ref.name, title=title, text=text, format=fmt, url=url)
