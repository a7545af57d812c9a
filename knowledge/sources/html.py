"""HTML sources: keep the main content, drop the site chrome, convert to Markdown-like text."""

from __future__ import annotations

import re

from bs4 import BeautifulSoup
from bs4.element import Comment, Declaration, Doctype, NavigableString, ProcessingInstruction, Tag

from knowledge.errors import SourceError
from knowledge.sources.decoding import check_not_empty, humanise, squash, stem_of
from knowledge.types import Document, RawSource

_CHROME_TAGS = frozenset(
    {"nav", "footer", "aside", "script", "style", "noscript", "form", "template", "svg", "iframe", "button", "dialog"}
)
_CHROME_ROLES = re.compile(r"^(navigation|banner|contentinfo|complementary|search|dialog|alertdialog)$", re.I)
_COOKIE = re.compile(r"cookie|consent|gdpr", re.I)
_SKIPPED = (Comment, Declaration, Doctype, ProcessingInstruction)
_BLOCKS = {
    "p", "div", "section", "article", "main", "body", "blockquote", "figure", "figcaption", "dl", "dt", "dd",
    "address", "details", "summary", "header", "hgroup", "table", "thead", "tbody", "tfoot",
}


class _Converter:
    """Walks a tree and collects Markdown blocks; list items and table rows are kept tight."""

    def __init__(self) -> None:
        self.blocks: list[tuple[str, bool]] = []  # (text, tight: joined to the previous with one newline)
        self.inline: list[str] = []
        self.prefix = ""
        self.tight = False

    def flush(self) -> None:
        lines = [squash(line) for line in "".join(self.inline).split("\n")]
        text = "\n".join(line for line in lines if line)
        if text:
            self.blocks.append((self.prefix + text, self.tight))
        self.inline, self.prefix, self.tight = [], "", False

    def walk(self, node: Tag, depth: int = 0) -> None:
        for child in node.children:
            if isinstance(child, _SKIPPED):
                continue
            if isinstance(child, NavigableString):
                self.inline.append(re.sub(r"\s+", " ", str(child)))  # source newlines are just spaces
            elif isinstance(child, Tag):
                self.element(child, depth)

    def element(self, tag: Tag, depth: int) -> None:
        name = tag.name
        if re.fullmatch(r"h[1-6]", name):
            self.flush()
            self.blocks.append(("#" * int(name[1]) + " " + squash(tag.get_text(" ")), False))
        elif name in ("ul", "ol"):
            self.flush()
            for number, item in enumerate(tag.find_all("li", recursive=False), start=1):
                self.prefix = "  " * depth + (f"{number}. " if name == "ol" else "- ")
                self.tight = number > 1 or depth > 0
                self.walk(item, depth + 1)
                self.flush()
        elif name == "tr":
            self.flush()
            cells = [squash(cell.get_text(" ")) for cell in tag.find_all(["td", "th"], recursive=False)]
            table = tag.find_parent("table")
            if any(cells):
                self.blocks.append((" | ".join(cells), table is not None and table.find("tr") is not tag))
        elif name == "pre":
            self.flush()
            self.blocks.append(("```\n" + tag.get_text().strip("\n") + "\n```", False))
        elif name == "br":
            self.inline.append("\n")
        elif name == "img":
            return
        elif name in _BLOCKS or name == "li":
            self.flush()
            self.walk(tag, depth)
            self.flush()
        else:  # inline: a, span, strong, em, code ... keep the text, drop URLs
            self.walk(tag, depth)

    def markdown(self) -> str:
        self.flush()
        out = ""
        for text, tight in self.blocks:
            out += ("\n" if tight and out else "\n\n" if out else "") + text
        return out


def _is_chrome(tag: Tag) -> bool:
    """True for navigation, banners, scripts, forms, cookie notices and hidden elements."""
    if tag.name in _CHROME_TAGS or tag.has_attr("hidden"):
        return True
    if tag.name == "header":
        # A page header is chrome; an article's own header holding its heading is not.
        return not (tag.find_parent(["article", "main"]) and tag.find(["h1", "h2", "h3"]))
    if tag.name in ("html", "body", "main", "article"):
        return False
    names = " ".join(str(v) for key in ("id", "class") for v in tag.get_attribute_list(key) if v)
    role = " ".join(str(v) for v in tag.get_attribute_list("role") if v)
    return bool(_CHROME_ROLES.match(role) or _COOKIE.search(names))


def _drop_chrome(soup: BeautifulSoup) -> None:
    # One pass that does not descend into what it removes (linear even on deeply nested pages).
    doomed: list[Tag] = []
    stack: list[Tag] = [soup]
    while stack:
        for child in stack.pop().find_all(True, recursive=False):
            (doomed if _is_chrome(child) else stack).append(child)
    for tag in doomed:
        tag.decompose()


def _charset(content_type: str | None) -> str | None:
    match = re.search(r"charset=[\"']?([\w-]+)", content_type or "", re.I)
    return match.group(1) if match else None


def parse_html(raw: RawSource) -> list[Document]:
    """One markdown Document holding the page's main content; title from <title> or the first <h1>."""
    check_not_empty(raw.data)
    if b"\x00" in raw.data[:8192] and not raw.data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise SourceError("binary file posing as HTML (it contains NUL bytes); remove it or fix its extension")
    soup = BeautifulSoup(raw.data, "lxml", from_encoding=_charset(raw.content_type))
    title_tag, h1 = soup.find("title"), soup.find("h1")
    title = squash(title_tag.get_text()) if title_tag else ""
    title = title or (squash(h1.get_text(" ")) if h1 else "") or humanise(stem_of(raw.ref.name))
    _drop_chrome(soup)
    root = soup.find("main") or soup.find("article") or soup.find(True, attrs={"role": "main"}) or soup.body or soup
    converter = _Converter()
    try:
        converter.walk(root)
    except RecursionError as exc:
        raise SourceError("HTML is nested too deeply to convert (hundreds of levels); simplify the page") from exc
    text = converter.markdown()
    if not text:
        raise SourceError("HTML page has no text in its main content; check that it is not rendered by JavaScript")
    url = raw.ref.location if raw.ref.kind == "url" else None
    return [Document(source=raw.ref.name, origin=raw.ref.name, title=title, text=text, format="markdown", url=url)]
