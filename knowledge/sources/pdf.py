"""PDF sources: the text layer, one Document per page (``metadata["page"]``, 1-based)."""

from __future__ import annotations

import io
import re
import struct
import zlib
from typing import TYPE_CHECKING

from knowledge.errors import SourceError
from knowledge.sources.decoding import check_not_empty, humanise, squash, stem_of
from knowledge.types import Document, RawSource

if TYPE_CHECKING:
    from pypdf import PdfReader

_MAX_TITLE = 120
# Titles that authoring tools fill in by default say nothing about the document.
_PLACEHOLDER_TITLE = re.compile(
    r"^(untitled( document)?|document\d*|microsoft (word|powerpoint) - .*|.*\.(docx?|pptx?|pdf))$", re.I
)
# pypdf raises these (besides its own PyPdfError family) on damaged files; anything else is a bug.
_DAMAGE = (ValueError, KeyError, IndexError, TypeError, AttributeError, struct.error, zlib.error, RecursionError)


def _open(data: bytes) -> PdfReader:
    from pypdf import PasswordType, PdfReader
    from pypdf.errors import DependencyError, PyPdfError

    if not data.lstrip()[:5] == b"%PDF-":
        raise SourceError("not a PDF (no %PDF- header); fix the file's extension or re-export it")
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:
                opened = reader.decrypt("")
            except DependencyError as exc:
                raise SourceError(
                    f"PDF is encrypted with a scheme that needs an extra package ({exc}); "
                    "pip install cryptography, or save an unencrypted copy"
                ) from exc
            if opened == PasswordType.NOT_DECRYPTED:
                raise SourceError("PDF is encrypted with a password; save an unencrypted copy and ingest that")
        len(reader.pages)  # forces the page tree to load, so damage shows here
    except SourceError:
        raise
    except (PyPdfError, *_DAMAGE) as exc:
        raise SourceError(f"corrupt PDF ({type(exc).__name__}: {exc}); re-export or repair the file") from exc
    return reader


def parse_pdf(raw: RawSource) -> list[Document]:
    """Extract the text layer page by page; title from /Title metadata or the first line."""
    from pypdf.errors import PyPdfError

    check_not_empty(raw.data)
    reader = _open(raw.data)
    pages: list[tuple[int, str]] = []
    try:
        for number, page in enumerate(reader.pages, start=1):
            text = (page.extract_text() or "").strip()
            if text:
                pages.append((number, text))
        meta_title = squash(str(reader.metadata.title or "")) if reader.metadata else ""
    except (PyPdfError, *_DAMAGE) as exc:
        raise SourceError(f"corrupt PDF ({type(exc).__name__}: {exc}); re-export or repair the file") from exc
    if not pages:
        raise SourceError(
            "PDF has no text layer (scanned images?); run OCR on it first (e.g. ocrmypdf) and ingest the result"
        )
    if _PLACEHOLDER_TITLE.match(meta_title):
        meta_title = ""
    first_line = next(line.strip() for line in pages[0][1].splitlines() if line.strip())
    title = meta_title or (first_line if len(first_line) <= _MAX_TITLE else humanise(stem_of(raw.ref.name)))
    url = raw.ref.location if raw.ref.kind == "url" else None
    return [
        Document(
            source=raw.ref.name, origin=raw.ref.name, title=title, text=text, format="text", url=url,
            metadata={"page": number, "pages": len(reader.pages)},
        )
        for number, text in pages
    ]
