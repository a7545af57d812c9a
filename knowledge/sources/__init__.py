"""Knowledge sources: find them (:func:`discover`), load them (:func:`read`), parse them (:func:`parse`).

Supported formats, by file suffix (or, for web pages, by Content-Type):

========================  ==============================================================
``.md`` ``.markdown``     Markdown; title from front matter ``title:``, the first ``#``
``.txt``                  plain text; title is the first line when short
``.html`` ``.htm``        main content only (nav, header, footer, scripts, cookie banners
                          dropped), converted to Markdown
``.pdf``                  the text layer, page by page (scanned PDFs need OCR first)
``.csv``                  FAQ: ``question`` and ``answer`` columns (optional ``id``, ``url``,
                          ``tags``)
``.json`` ``.yaml/.yml``  FAQ: a list of ``{question, answer}`` objects, or ``{faq: [...]}``
========================  ==============================================================

Text must be UTF-8 (a BOM is fine) or UTF-16 with a BOM; other encodings are refused
with the offending byte's offset rather than guessed. Other file types are skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import urldefrag

from knowledge.errors import KnowledgeConfigError, SourceError
from knowledge.settings import KnowledgeSettings
from knowledge.sources import faq, files, html, markdown, pdf, web
from knowledge.sources.decoding import suffix_of
from knowledge.types import Document, RawSource, SourceRef

SUPPORTED_SUFFIXES: frozenset[str] = frozenset(
    {".md", ".markdown", ".txt", ".html", ".htm", ".pdf", ".csv", ".json", ".yaml", ".yml"}
)

Parser = Callable[[RawSource], list[Document]]
_BY_SUFFIX: dict[str, Parser] = {
    ".md": markdown.parse_markdown,
    ".markdown": markdown.parse_markdown,
    ".txt": markdown.parse_text,
    ".html": html.parse_html,
    ".htm": html.parse_html,
    ".pdf": pdf.parse_pdf,
    ".csv": faq.parse_csv,
    ".json": faq.parse_json,
    ".yaml": faq.parse_yaml,
    ".yml": faq.parse_yaml,
}
_BY_CONTENT_TYPE: dict[str, Parser] = {
    "text/html": html.parse_html,
    "application/xhtml+xml": html.parse_html,
    "application/pdf": pdf.parse_pdf,
    "text/markdown": markdown.parse_markdown,
    "text/x-markdown": markdown.parse_markdown,
    "text/csv": faq.parse_csv,
    "application/json": faq.parse_json,
    "application/yaml": faq.parse_yaml,
    "application/x-yaml": faq.parse_yaml,
    "text/yaml": faq.parse_yaml,
    "text/plain": markdown.parse_text,
}
_GENERIC_TYPES = {"", "text/plain", "application/octet-stream", "binary/octet-stream"}


def _folder(settings: KnowledgeSettings, root: Path) -> Path | None:
    folder = Path(settings.path).expanduser()
    folder = folder if folder.is_absolute() else root / folder
    if folder.is_dir():
        return folder
    # A bot that only lists URLs need not create the default folder; a folder named on purpose must exist.
    if "path" not in settings.model_fields_set and (settings.urls or settings.sitemaps) and not folder.exists():
        return None
    problem = "is not a folder" if folder.exists() else "not found"
    raise KnowledgeConfigError(f"knowledge folder {problem}: {folder} (knowledge.path); create it or fix the setting")


def discover(settings: KnowledgeSettings, root: Path) -> tuple[list[SourceRef], list[tuple[str, str]]]:
    """Every source to ingest (files, ``urls``, sitemap pages) sorted by name, plus (name, reason) failures."""
    folder = _folder(settings, root)
    refs = {ref.name: ref for ref in files.walk_folder(folder, SUPPORTED_SUFFIXES)} if folder else {}
    failures: list[tuple[str, str]] = []
    pages, sitemap_failures = web.sitemap_pages(
        settings.sitemaps, timeout_s=settings.fetch_timeout_s, max_file_mb=settings.max_file_mb
    )
    failures.extend(sitemap_failures)
    for url in [*settings.urls, *pages]:
        url = urldefrag(url.strip()).url  # '#' in a source name means an FAQ pair
        try:
            web.check_url(url)
        except SourceError as exc:
            failures.append((url, str(exc)))
            continue
        refs.setdefault(url, SourceRef(name=url, location=url, kind="url"))
    return sorted(refs.values(), key=lambda ref: ref.name), failures


def read(ref: SourceRef, settings: KnowledgeSettings) -> RawSource:
    """Load a file's bytes or fetch a URL, refusing anything over ``max_file_mb``; fingerprint with sha256."""
    if ref.kind == "url":
        return web.fetch_source(ref, timeout_s=settings.fetch_timeout_s, max_file_mb=settings.max_file_mb)
    return files.read_file(ref, settings.max_file_mb)


def _parser(raw: RawSource) -> Parser:
    suffix = suffix_of(raw.ref.name)
    if raw.ref.kind == "url":
        content_type = (raw.content_type or "").split(";", 1)[0].strip().lower()
        if content_type in _GENERIC_TYPES and suffix in _BY_SUFFIX:
            return _BY_SUFFIX[suffix]
        if content_type in _BY_CONTENT_TYPE:
            return _BY_CONTENT_TYPE[content_type]
        raise SourceError(
            f"unsupported content type {content_type or 'none'!r}; botkit reads HTML, PDF, Markdown, text and FAQ files"
        )
    if suffix not in _BY_SUFFIX:
        supported = ", ".join(sorted(SUPPORTED_SUFFIXES))
        raise SourceError(f"unsupported file type {suffix or '(none)'!r}; supported: {supported}")
    return _BY_SUFFIX[suffix]


def parse(raw: RawSource) -> list[Document]:
    """Parse a source into Documents by suffix or content type; SourceError names what is wrong."""
    return _parser(raw)(raw)


__all__ = ["SUPPORTED_SUFFIXES", "discover", "parse", "read"]
