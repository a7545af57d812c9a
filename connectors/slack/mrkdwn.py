"""Markdown to Slack mrkdwn, and splitting mrkdwn at Slack's size limits (pure functions)."""

from __future__ import annotations

import re

# -- Markdown to mrkdwn -----------------------------------------------------------------

_FENCE = re.compile(r"^```[^\n]*\n(.*?)(?:^```[ \t]*$|\Z)", re.M | re.S)
_HEADING = re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+(.+?)[ \t#]*$")
_BULLET = re.compile(r"^([ \t]*)[-*+][ \t]+")
_INLINE = re.compile(r"(`[^`\n]+`)|!?\[([^\]\n]+)\]\(([^)\s]+)(?:[ \t]+\"[^\"\n]*\")?\)|<((?:https?|mailto):[^>\s]+)>")
_ITALIC = re.compile(r"(?<![*\w])\*(?![\s*])([^*\n]+?)(?<![\s*])\*(?![*\w])")
_BOLD = re.compile(r"(\*\*|__)(?!\s)(.+?)(?<!\s)\1")
_STRIKE = re.compile(r"~~(?!\s)(.+?)(?<!\s)~~")


def escape(text: str) -> str:
    """Escape the three characters Slack reserves for its markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_mrkdwn(markdown: str) -> str:
    """Convert Markdown to Slack mrkdwn.

    ``**bold**`` → ``*bold*``, ``*italic*`` → ``_italic_``, ``~~x~~`` → ``~x~``,
    ``[text](url)`` → ``<url|text>`` (http, https and mailto only), headings → bold lines,
    list bullets → ``•``; ``&``, ``<`` and ``>`` are escaped everywhere, code included.
    """
    out: list[str] = []
    position = 0
    for fence in _FENCE.finditer(markdown):
        out.append(_blocks(markdown[position:fence.start()]))
        out.append("```\n" + escape(fence.group(1).rstrip("\n")) + "\n```")
        position = fence.end()
    out.append(_blocks(markdown[position:]))
    return "".join(out).strip()


def _blocks(text: str) -> str:
    lines = []
    for line in text.split("\n"):
        heading = _HEADING.match(line)
        if heading:
            title = _inline(heading.group(1).replace("**", "").replace("__", ""))
            lines.append(f"*{title}*" if title else "")
            continue
        bullet = _BULLET.match(line)
        if bullet:
            line = f"{bullet.group(1)}• {line[bullet.end():]}"
        lines.append(_inline(line))
    return "\n".join(lines)


def _inline(text: str) -> str:
    out: list[str] = []
    position = 0
    for match in _INLINE.finditer(text):
        out.append(_emphasis(escape(text[position:match.start()])))
        code, label, url, auto = match.groups()
        if code:
            out.append(escape(code))
        elif auto:
            out.append(f"<{url_target(auto)}>")
        elif re.match(r"(?:https?|mailto):", url or ""):
            out.append(f"<{url_target(url)}|{escape(label.replace('**', '').replace('`', ''))}>")
        else:  # a relative or unsafe target is not made clickable
            out.append(_emphasis(escape(f"{label} ({url})")))
        position = match.end()
    out.append(_emphasis(escape(text[position:])))
    return "".join(out)


def url_target(url: str) -> str:
    """A URL as the target of a ``<url|label>`` link."""
    return escape(url).replace("|", "%7C")


def _emphasis(text: str) -> str:
    text = _ITALIC.sub(r"_\1_", text)
    text = _BOLD.sub(r"*\2*", text)
    return _STRIKE.sub(r"~\1~", text)


# -- splitting at Slack's limits ----------------------------------------------------------

def split_text(text: str, limit: int) -> list[str]:
    """Split mrkdwn into pieces of at most ``limit`` characters.

    Cuts at a paragraph break, else a line break, else a space, else anywhere; never
    inside a ``<link|label>`` or an ``&amp;`` entity; a code block cut in two is closed
    and reopened so both halves render as code.
    """
    if limit < 16:
        raise ValueError("limit must be at least 16 characters")
    pieces: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        cut = _cut(rest, limit - 4)  # room to close a code fence
        piece, rest = rest[:cut].rstrip(), rest[cut:].lstrip()
        if piece.count("```") % 2:
            piece += "\n```"
            rest = "```\n" + rest
        pieces.append(piece)
    if rest:
        pieces.append(rest)
    return pieces


def _cut(text: str, limit: int) -> int:
    window = text[:limit]
    for separator in ("\n\n", "\n", " "):
        index = window.rfind(separator)
        if index > limit // 3:
            return outside_markup(text, index + len(separator))
    return outside_markup(text, limit)


def outside_markup(text: str, cut: int) -> int:
    """``cut`` moved back so that it falls outside any ``<...>`` link and ``&...;`` entity."""
    opened, closed = text.rfind("<", 0, cut), text.rfind(">", 0, cut)
    if opened > closed and opened > 0:
        cut = opened
    amp = text.rfind("&", max(0, cut - 6), cut)
    if amp != -1 and ";" not in text[amp:cut]:
        cut = amp if amp > 0 else cut
    return max(cut, 1)
