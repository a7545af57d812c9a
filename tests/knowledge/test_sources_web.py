"""Web sources against a real HTTP server on 127.0.0.1: URLs, sitemaps, failures, limits."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from knowledge.errors import SourceError
from knowledge.settings import KnowledgeSettings
from knowledge.sources import discover, parse, read
from knowledge.types import SourceRef

PAGE = (
    "<html><head><title>{title}</title></head>"
    "<body><nav>MENU</nav><main><h1>{title}</h1><p>{body}</p></main></body></html>"
)


def _urlset(*urls: str) -> str:
    entries = "".join(f"<url><loc>{url}</loc></url>" for url in urls)
    return f'<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{entries}</urlset>'


def _index(*urls: str) -> str:
    entries = "".join(f"<sitemap><loc>{url}</loc></sitemap>" for url in urls)
    return f'<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{entries}</sitemapindex>'


def _kb(tmp_path: Path) -> Path:
    (tmp_path / "knowledge").mkdir()
    return tmp_path


def test_url_list_is_fetched_and_parsed(site, tmp_path: Path) -> None:
    url = site.add("/help/shipping", PAGE.format(title="Shipping", body="We ship in 2 days."))
    refs, failures = discover(KnowledgeSettings(urls=[url, url + "#top"]), _kb(tmp_path))
    assert refs == [SourceRef(name=url, location=url, kind="url")] and failures == []
    raw = read(refs[0], KnowledgeSettings())
    assert raw.content_type == "text/html; charset=utf-8" and len(raw.fingerprint) == 64
    [doc] = parse(raw)
    assert (doc.title, doc.url, doc.source) == ("Shipping", url, url)
    assert "We ship in 2 days." in doc.text and "MENU" not in doc.text


def test_sitemap_index_is_followed_to_its_pages(site, tmp_path: Path) -> None:
    pages = [site.add(f"/p/{n}", PAGE.format(title=f"P{n}", body="x")) for n in range(4)]
    site.add("/sitemap-a.xml", _urlset(pages[0], pages[1]), content_type="application/xml")
    site.add("/sitemap-b.xml.gz", gzip.compress(_urlset(pages[2], "/p/3").encode()), content_type="application/gzip")
    index = site.add("/sitemap_index.xml", _index("/sitemap-a.xml", site.url("/sitemap-b.xml.gz")),
                     content_type="application/xml")
    refs, failures = discover(KnowledgeSettings(sitemaps=[index], urls=[pages[0]]), _kb(tmp_path))
    assert failures == []
    assert [ref.name for ref in refs] == sorted(pages)
    assert all(ref.kind == "url" for ref in refs)


def test_files_and_urls_are_sorted_together(site, tmp_path: Path) -> None:
    root = _kb(tmp_path)
    (root / "knowledge" / "z.md").write_text("# Z")
    url = site.add("/a", PAGE.format(title="A", body="a"))
    refs, _ = discover(KnowledgeSettings(urls=[url]), root)
    assert [ref.name for ref in refs] == sorted([url, "z.md"])


def test_unreachable_and_bad_sitemaps_are_reported_as_failures(site, closed_port: int, tmp_path: Path) -> None:
    down = f"http://127.0.0.1:{closed_port}/sitemap.xml"
    missing = site.url("/nope.xml")
    html = site.add("/not-a-sitemap.xml", "<html><body>hi</body></html>", content_type="text/html")
    broken = site.add("/broken.xml", "<urlset><url><loc>", content_type="application/xml")
    refs, failures = discover(
        KnowledgeSettings(sitemaps=[down, missing, html, broken], urls=["ftp://example.com/x"]), _kb(tmp_path)
    )
    assert refs == []
    reasons = dict(failures)
    assert reasons[down].startswith("sitemap: unreachable: connection refused")
    assert reasons[missing] == "sitemap: HTTP 404 Not Found"
    assert "root element is <html>" in reasons[html]
    assert "invalid XML" in reasons[broken]
    assert "not an http(s) URL" in reasons["ftp://example.com/x"]


def test_unreachable_url_is_a_source_error(closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}/page"
    with pytest.raises(SourceError, match=r"^unreachable: connection refused"):
        read(SourceRef(url, url, "url"), KnowledgeSettings(fetch_timeout_s=2))


def test_http_404_is_a_source_error(site) -> None:
    url = site.url("/missing")
    with pytest.raises(SourceError, match=r"^HTTP 404"):
        read(SourceRef(url, url, "url"), KnowledgeSettings())


def test_redirects_are_followed(site) -> None:
    target = site.add("/new", PAGE.format(title="New", body="moved here"))
    old = site.add("/old", "", status=301, headers={"Location": "/new"})
    raw = read(SourceRef(old, old, "url"), KnowledgeSettings())
    assert b"moved here" in raw.data and target.endswith("/new")


def test_oversized_responses_are_refused_by_header_and_by_count(site) -> None:
    settings = KnowledgeSettings(max_file_mb=0.01)  # 10 KiB
    declared = site.add("/big", "x" * 20_000, content_type="text/plain")
    with pytest.raises(SourceError, match=r"response is 19\.5 KB, over the 0\.01 MB limit \(knowledge\.max_file_mb\)"):
        read(SourceRef(declared, declared, "url"), settings)
    streamed = site.add("/stream", "y" * 50_000, content_type="text/plain", chunked=True)
    with pytest.raises(SourceError, match=r"over the 0\.01 MB limit"):
        read(SourceRef(streamed, streamed, "url"), settings)


def test_content_type_picks_the_parser_and_generic_types_fall_back_to_the_suffix(site) -> None:
    md = site.add("/guide.md", "# Guide\n\nSteps", content_type="text/plain")
    [doc] = parse(read(SourceRef(md, md, "url"), KnowledgeSettings()))
    assert (doc.format, doc.title, doc.url) == ("markdown", "Guide", md)
    faq = site.add("/faq", '[{"question": "Q?", "answer": "A"}]', content_type="application/json")
    [pair] = parse(read(SourceRef(faq, faq, "url"), KnowledgeSettings()))
    assert pair.source == faq + "#1" and pair.origin == faq
    image = site.add("/logo", b"\x89PNG", content_type="image/png")
    with pytest.raises(SourceError, match="unsupported content type 'image/png'"):
        parse(read(SourceRef(image, image, "url"), KnowledgeSettings()))
