"""Web sources: fetching pages within the size and time limits, and reading sitemaps."""

from __future__ import annotations

import hashlib
import re
import zlib
from urllib.parse import urljoin, urlsplit

import httpx

from knowledge.errors import SourceError
from knowledge.sources.files import too_large
from knowledge.types import RawSource, SourceRef

USER_AGENT = "botkit-knowledge/0.1 (+https://github.com/botkit)"
_MB = 1024 * 1024
_MAX_SITEMAP_DEPTH = 3


def check_url(url: str) -> None:
    """Raise SourceError unless ``url`` is an absolute http(s) URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SourceError(f"not an http(s) URL: {url!r}; write it as https://host/path")


def client(timeout_s: float) -> httpx.Client:
    """An HTTP client that follows redirects and gives up after ``timeout_s`` per phase."""
    return httpx.Client(timeout=timeout_s, follow_redirects=True, headers={"User-Agent": USER_AGENT})


def _unreachable(exc: httpx.HTTPError, timeout_s: float) -> SourceError:
    if isinstance(exc, httpx.TimeoutException):
        return SourceError(f"timed out after {timeout_s:g} s (knowledge.fetch_timeout_s); retry or raise the limit")
    if isinstance(exc, httpx.TooManyRedirects):
        return SourceError("too many redirects; point the setting at the final URL")
    if isinstance(exc, (httpx.UnsupportedProtocol, httpx.InvalidURL)):
        return SourceError(f"invalid URL: {exc}")
    reason = re.sub(r"^\[Errno -?\d+\]\s*", "", str(exc)).strip() or type(exc).__name__
    if isinstance(exc, httpx.ConnectError):
        return SourceError(f"unreachable: {reason[:1].lower() + reason[1:]}; check the URL and that the site is up")
    return SourceError(f"fetch failed: {type(exc).__name__}: {reason}")


def fetch(url: str, http: httpx.Client, *, timeout_s: float, max_file_mb: float) -> tuple[bytes, str | None]:
    """GET ``url``; return (body, content type). Refuses bodies over the limit while streaming."""
    check_url(url)
    limit = max_file_mb * _MB
    try:
        with http.stream("GET", url) as response:
            if response.status_code >= 400:
                raise SourceError(f"HTTP {response.status_code} {response.reason_phrase}".rstrip())
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise too_large(int(declared), max_file_mb, "response")
            body = bytearray()
            for piece in response.iter_bytes():
                body += piece
                if len(body) > limit:
                    raise too_large(len(body), max_file_mb, "response (so far)")
            return bytes(body), response.headers.get("content-type")
    except httpx.HTTPError as exc:
        raise _unreachable(exc, timeout_s) from exc


def fetch_source(ref: SourceRef, *, timeout_s: float, max_file_mb: float) -> RawSource:
    """Fetch one web page and fingerprint its bytes."""
    with client(timeout_s) as http:
        data, content_type = fetch(ref.location, http, timeout_s=timeout_s, max_file_mb=max_file_mb)
    return RawSource(ref=ref, data=data, fingerprint=hashlib.sha256(data).hexdigest(), content_type=content_type)


def _gunzip(data: bytes, max_file_mb: float) -> bytes:
    if not data.startswith(b"\x1f\x8b"):
        return data
    inflater = zlib.decompressobj(wbits=31)
    try:
        out = inflater.decompress(data, int(max_file_mb * _MB) + 1)
    except zlib.error as exc:
        raise SourceError(f"corrupt gzip sitemap: {exc}") from exc
    if len(out) > max_file_mb * _MB:
        raise too_large(len(out), max_file_mb, "unzipped sitemap")
    return out


def _parse_sitemap(data: bytes, base: str) -> tuple[str, list[str]]:
    """Return ('urlset' | 'sitemapindex', absolute <loc> URLs) of a sitemap document."""
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    try:
        root = etree.fromstring(data, parser=parser)
    except etree.XMLSyntaxError as exc:
        raise SourceError(f"not a sitemap: invalid XML ({exc})") from exc
    if root is None:
        raise SourceError("not a sitemap: empty document")
    kind = etree.QName(root).localname
    if kind not in ("urlset", "sitemapindex"):
        raise SourceError(f"not a sitemap: root element is <{kind}>, expected <urlset> or <sitemapindex>")
    locs = [
        urljoin(base, (el.text or "").strip())
        for el in root.iter("{*}loc")
        if (el.text or "").strip()
    ]
    return kind, locs


def sitemap_pages(
    sitemaps: list[str], *, timeout_s: float, max_file_mb: float
) -> tuple[list[str], list[tuple[str, str]]]:
    """Page URLs listed by the sitemaps (indexes followed); failures as (sitemap URL, reason)."""
    pages: list[str] = []
    failures: list[tuple[str, str]] = []
    if not sitemaps:
        return pages, failures
    seen: set[str] = set()
    queue = [(url, 0) for url in sitemaps]
    with client(timeout_s) as http:
        while queue:
            url, depth = queue.pop(0)
            if url in seen:
                continue
            seen.add(url)
            try:
                data, _ = fetch(url, http, timeout_s=timeout_s, max_file_mb=max_file_mb)
                kind, locs = _parse_sitemap(_gunzip(data, max_file_mb), url)
            except SourceError as exc:
                failures.append((url, f"sitemap: {exc}"))
                continue
            if kind == "urlset":
                pages.extend(locs)
            elif depth + 1 > _MAX_SITEMAP_DEPTH:
                failures.append((url, f"sitemap: index nested deeper than {_MAX_SITEMAP_DEPTH} levels; not followed"))
            else:
                queue.extend((loc, depth + 1) for loc in locs)
    return pages, failures
