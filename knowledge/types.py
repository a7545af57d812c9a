"""Value objects that flow through the knowledge pipeline.

sources ──► :class:`RawSource` ──► :class:`Document` ──► :class:`Chunk` ──► index
query  ──► :class:`Passage` (a ranked chunk with its score)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

DocumentFormat = Literal["markdown", "text", "faq"]


@dataclass(frozen=True)
class SourceRef:
    """Where a source lives, before it is read.

    ``name`` is the stable source name: the path relative to the knowledge folder with
    ``/`` separators, or the URL. ``location`` is the absolute file path or the URL.
    """

    name: str
    location: str
    kind: Literal["file", "url"] = "file"


@dataclass(frozen=True)
class RawSource:
    """The bytes of one source and their fingerprint (sha256 hex of ``data``)."""

    ref: SourceRef
    data: bytes
    fingerprint: str
    content_type: str | None = None


@dataclass(frozen=True)
class Document:
    """A parsed source (or one FAQ pair of a source), ready for chunking.

    For ``format == "markdown"`` the text keeps Markdown headings (HTML is converted to
    this form) so the chunker can keep each chunk's section path. For ``"faq"`` ``title`` is
    the question and ``text`` the answer; ``source`` carries the pair's fragment
    (``faq.csv#reset-password``) while ``origin`` names the file.
    """

    source: str
    origin: str
    title: str
    text: str
    format: DocumentFormat
    url: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Chunk:
    """One indexed unit: what is embedded (``embed_text``) and what is returned (``text``)."""

    id: str
    source: str
    origin: str
    title: str
    section: str
    text: str
    embed_text: str
    ordinal: int
    kind: Literal["article", "faq"] = "article"
    url: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk with its relevance score (higher is better, 0..1 for vectors)."""

    chunk_id: str
    source: str
    title: str
    section: str
    text: str
    score: float
    kind: Literal["article", "faq"] = "article"
    url: str | None = None
    vector_score: float | None = None
    lexical_rank: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (used by ``botkit search --json``)."""
        return {
            "chunk_id": self.chunk_id,
            "source": self.source,
            "title": self.title,
            "section": self.section,
            "score": round(self.score, 4),
            "kind": self.kind,
            "url": self.url,
            "text": self.text,
        }


def source_matches(retrieved: str, expected: str) -> bool:
    """True when a retrieved source name equals an expected one, or equals it up to ``#``."""
    if retrieved == expected:
        return True
    return retrieved.split("#", 1)[0] == expected.split("#", 1)[0] and "#" not in expected
