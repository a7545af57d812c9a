"""Parsing Markdown, plain text and HTML files into Documents."""

from __future__ import annotations

from pathlib import Path

import pytest

from knowledge.errors import SourceError
from knowledge.sources import parse
from knowledge.types import RawSource, SourceRef


def _raw(name: str, data: str | bytes, *, url: bool = False, content_type: str | None = None) -> RawSource:
    body = data.encode() if isinstance(data, str) else data
    ref = SourceRef(name=name, location=name if url else f"/kb/{name}", kind="url" if url else "file")
    return RawSource(ref=ref, data=body, fingerprint="f", content_type=content_type)


def test_markdown_title_is_the_first_h1_and_text_keeps_headings() -> None:
    text = "Intro line.\n\n```\n# not a title\n```\n\n# Reset your password\n\n## Steps\n\n1. Open settings\n"
    [doc] = parse(_raw("account/reset.md", text))
    assert doc.title == "Reset your password"
    assert doc.format == "markdown" and "## Steps" in doc.text and "1. Open settings" in doc.text
    assert doc.source == doc.origin == "account/reset.md" and doc.url is None


def test_markdown_without_h1_takes_the_humanised_stem_or_front_matter() -> None:
    [doc] = parse(_raw("guides/getting-started_v2.markdown", "## Install\n\nRun it."))
    assert doc.title == "Getting started v2"
    [front] = parse(_raw("x.md", "---\ntitle: Shipping policy\ntags: [a]\n---\n# Other\n\nBody"))
    assert front.title == "Shipping policy" and not front.text.startswith("---")


def test_text_title_is_a_short_first_line_else_the_stem() -> None:
    [doc] = parse(_raw("returns.txt", "Returns policy\n\nYou can return items within 30 days."))
    assert (doc.title, doc.format) == ("Returns policy", "text")
    [long] = parse(_raw("long_notes.txt", "x" * 200 + "\nmore"))
    assert long.title == "Long notes"


PAGE = """<!DOCTYPE html>
<html><head><title>Billing help</title>
<style>body { color: red } .STYLETEXT {}</style>
<script>window.SCRIPTTEXT = 1</script></head>
<body>
<header><a href="/">NAVHOME</a><nav><ul><li><a href="/a">NAVLINK</a></li></ul></nav></header>
<div id="cookie-consent">We use cookies COOKIETEXT <button>Accept</button></div>
<aside>ASIDETEXT related articles</aside>
<main>
  <h1>Invoices</h1>
  <p>Download invoices from the <a href="https://example.com/billing">billing page</a>.</p>
  <h2>Payment methods</h2>
  <ul><li>Credit card</li><li>Bank transfer<ul><li>SEPA only</li></ul></li></ul>
  <h3>Refunds</h3>
  <p>Refunds take   5
     days.</p>
  <form><input name="q"> FORMTEXT</form>
  <noscript>NOSCRIPTTEXT</noscript>
</main>
<footer>FOOTERTEXT &copy; Acme</footer>
</body></html>"""


def test_html_keeps_main_content_as_markdown_and_drops_chrome() -> None:
    [doc] = parse(_raw("billing.html", PAGE))
    assert doc.title == "Billing help" and doc.format == "markdown"
    assert doc.text.startswith("# Invoices\n\nDownload invoices from the billing page.")
    assert "## Payment methods\n\n- Credit card\n- Bank transfer\n  - SEPA only" in doc.text
    assert "### Refunds\n\nRefunds take 5 days." in doc.text
    for chrome in ["NAV", "SCRIPTTEXT", "STYLETEXT", "COOKIETEXT", "ASIDETEXT", "FOOTERTEXT", "FORMTEXT",
                   "NOSCRIPTTEXT", "https://example.com", "Accept"]:
        assert chrome not in doc.text


def test_html_prefers_article_then_role_main_then_body_and_h1_title() -> None:
    article = "<html><body><div>Sidebar junk</div><article><h1>Only this</h1><p>Body</p></article></body></html>"
    [doc] = parse(_raw("a.htm", article))
    assert doc.title == "Only this" and doc.text == "# Only this\n\nBody"
    role = "<body><div>junk</div><div role='main'><p>Main text</p><table><tr><th>Plan</th><th>Price</th></tr>" \
           "<tr><td>Pro</td><td>$10</td></tr></table></div></body>"
    [doc] = parse(_raw("b.html", role))
    assert doc.text == "Main text\n\nPlan | Price\nPro | $10" and doc.title == "B"
    [body] = parse(_raw("c.html", "<body><p>Just body</p><ol><li>one</li><li>two</li></ol></body>"))
    assert body.text == "Just body\n\n1. one\n2. two"


def test_html_article_header_with_its_heading_is_kept() -> None:
    page = "<body><header>SITE</header><article><header><h1>Title</h1></header><p>Text</p></article></body>"
    [doc] = parse(_raw("x.html", page))
    assert doc.text == "# Title\n\nText"


def test_pathologically_nested_html_is_a_source_error() -> None:
    with pytest.raises(SourceError, match="nested too deeply"):
        parse(_raw("deep.html", "<body>" + "<div>" * 2000 + "x" + "</div>" * 2000 + "</body>"))
    [doc] = parse(_raw("ok.html", "<body>" + "<div>" * 200 + "x" + "</div>" * 200 + "</body>"))
    assert doc.text == "x"


def test_fetched_html_uses_content_type_and_charset_and_sets_url() -> None:
    body = "<html><head><title>Café</title></head><body><main><p>Crème</p></main></body></html>".encode("cp1252")
    [doc] = parse(_raw("https://help.example/page", body, url=True, content_type="text/html; charset=windows-1252"))
    assert (doc.title, doc.text, doc.url) == ("Café", "Crème", "https://help.example/page")


def test_written_files_parse(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# A\n\nBody", encoding="utf-8")
    from knowledge.settings import KnowledgeSettings
    from knowledge.sources import discover, read

    [ref], _ = discover(KnowledgeSettings(path=str(tmp_path)), tmp_path)
    [doc] = parse(read(ref, KnowledgeSettings()))
    assert (doc.title, doc.text, doc.origin) == ("A", "# A\n\nBody", "a.md")
