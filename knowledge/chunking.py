"""Documents → chunks: Markdown by heading sections, text by size, FAQ pairs whole.

Chunk ids are deterministic: ``sha256(source, ordinal, text)[:32]`` where ``ordinal`` is the
chunk's position within its source (counted across all Documents of that source, e.g. the
pages of a PDF), so re-ingesting an unchanged source yields the same ids.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

from langchain_text_splitters import MarkdownHeaderTextSplitter, RecursiveCharacterTextSplitter

from knowledge.errors import KnowledgeConfigError
from knowledge.types import Chunk, Document

_HEADERS = [("#", "h1"), ("##", "h2"), ("###", "h3")]


def chunk_id(source: str, ordinal: int, text: str) -> str:
    """The stable id of the ``ordinal``-th chunk of ``source``."""
    return hashlib.sha256(f"{source}\x00{ordinal}\x00{text}".encode()).hexdigest()[:32]


def _sections(document: Document) -> Iterator[tuple[str, str]]:
    """(section path, section text) pairs of a Markdown document, headings stripped from the text."""
    # strip_headers=True: the heading lives in ``section`` (and the embed prefix), so a heading
    # followed directly by a sub-heading does not become a chunk of its own.
    splitter = MarkdownHeaderTextSplitter(_HEADERS, strip_headers=True)
    for part in splitter.split_text(document.text):
        path = [part.metadata.get(key, "") for _, key in _HEADERS]
        if path[0] == document.title:
            path[0] = ""
        # The splitter joins paragraphs with a Markdown hard break ("  \n"); restore the blank
        # line so the size splitter can still cut between paragraphs.
        yield " > ".join(p for p in path if p), part.page_content.replace("  \n", "\n\n")


def _pieces(document: Document, splitter: RecursiveCharacterTextSplitter) -> Iterator[tuple[str, str]]:
    if document.format == "markdown":
        for section, text in _sections(document):
            for piece in splitter.split_text(text):
                yield section, piece
    else:
        for piece in splitter.split_text(document.text):
            yield "", piece


def _faq_chunk(document: Document, ordinal: int) -> Chunk:
    question, answer = document.title.strip(), document.text.strip()
    text = f"Q: {question}\nA: {answer}"
    metadata: dict[str, Any] = {**document.metadata, "question": question, "answer": answer}
    return Chunk(
        id=chunk_id(document.source, ordinal, text), source=document.source, origin=document.origin,
        title=question, section="", text=text, embed_text=question, ordinal=ordinal, kind="faq",
        url=document.url, metadata=metadata,
    )


def chunk_documents(documents: Sequence[Document], *, chunk_size: int, chunk_overlap: int) -> list[Chunk]:
    """Split documents into chunks of at most ``chunk_size`` characters (FAQ pairs stay whole)."""
    if chunk_size <= 0 or not 0 <= chunk_overlap < chunk_size:
        raise KnowledgeConfigError(
            f"knowledge.chunk_overlap ({chunk_overlap}) must be at least 0 and smaller than "
            f"knowledge.chunk_size ({chunk_size}); lower the overlap"
        )
    splitter = RecursiveCharacterTextSplitter(chunk_size=chunk_size, chunk_overlap=chunk_overlap)
    ordinals: defaultdict[str, int] = defaultdict(int)
    chunks: list[Chunk] = []
    for document in documents:
        if document.format == "faq":
            if document.title.strip() and document.text.strip():
                chunks.append(_faq_chunk(document, ordinals[document.source]))
                ordinals[document.source] += 1
            continue
        for section, piece in _pieces(document, splitter):
            text = piece.strip()
            if not text:
                continue
            ordinal = ordinals[document.source]
            ordinals[document.source] += 1
            context = f"{document.title} > {section}" if section else document.title
            chunks.append(
                Chunk(
                    id=chunk_id(document.source, ordinal, text), source=document.source, origin=document.origin,
                    title=document.title, section=section, text=text, embed_text=f"{context}\n{text}",
                    ordinal=ordinal, kind="article", url=document.url, metadata=dict(document.metadata),
                )
            )
    return chunks
