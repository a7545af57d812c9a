"""Text helpers for the extractive backend: cleaning, terms, segmentation.

Internal: the extractive backend's algorithm lives here so it can be tested alone.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_TAG = re.compile(r"<(script|style)\b.*?</\1\s*>|<!--.*?-->|</?[A-Za-z][^<>]*>|<![^<>]*>", re.S | re.I)
_TAG_START = re.compile(r"<(?=[A-Za-z/!?])")
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_LIST_ITEM = re.compile(r"^\s*(?:\d{1,3}[.)]|[-*+•])\s+|^\s*\|")  # list items and table rows
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[\"'(\[]?[A-Z0-9])|(?<=[。！？])[”」』）]?\s*")
_CJK_RUN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]+")
_ANAPHORA = ("it ", "this ", "that ", "these ", "those ", "they ", "then ", "also ", "however", "otherwise")

STOPWORDS = frozenset(
    """a about above after again all also am an and any anyone are as at be because been before being below
    between both but by can could did do does doing done down during each else ever few for from further get
    gets getting got had has have having he hello help her here hers hi him his how i if in into is it its
    itself just know let like may me might more most much must my myself need needs no nor not now of off
    on once only or other our ours out over own please possible same she should so some such tell than
    thank thanks that the their them then there these they this those through to too under until up us
    very want wants was way we were what when where which while who whom why will with would yes you your
    yours""".split()
)


def strip_markup(text: str) -> str:
    """Plain text from ``text``: HTML tags, comments, scripts and styles removed.

    Entities are decoded and tags stripped again (so ``&lt;script&gt;`` cannot come back
    as markup); a ``<`` that would still open a tag is replaced by ``‹``.
    """
    for _ in range(3):
        cleaned = html.unescape(_TAG.sub(" ", text))
        if cleaned == text:
            break
        text = cleaned
    text = _TAG.sub(" ", text)
    text = _TAG_START.sub("‹", text)
    text = re.sub(r"!\[[^\]]*\]\([^)]*\)", "", text)  # markdown images
    return re.sub(r"[ \t]+", " ", text).strip()


def stem(word: str) -> str:
    """A light English stemmer: enough to match reset/resetting, ship/shipped, cancel/cancellation."""
    if word.endswith("'s"):
        word = word[:-2]
    for suffix, replacement, min_len in (("ies", "y", 5), ("sses", "ss", 5), ("ations", "", 8), ("ation", "", 7),
                                         ("ments", "", 7), ("ment", "", 6), ("ings", "", 6), ("ing", "", 5),
                                         ("ed", "", 5), ("es", "", 5), ("s", "", 4)):
        if len(word) >= min_len and word.endswith(suffix) and not word.endswith(("ss", "us", "is")):
            word = word[: -len(suffix)] + replacement
            break
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "aeiou":
        word = word[:-1]
    if len(word) > 3 and word.endswith("e"):
        word = word[:-1]
    return word


def terms(text: str) -> list[str]:
    """Stemmed content words of ``text`` (lower-cased, stopwords removed).

    Chinese, Japanese and Korean have no spaces between words: each run of CJK characters
    gives its overlapping character pairs (the usual bigram indexing of CJK text).
    """
    lowered = text.lower()
    words = [stem(w) for w in _WORD.findall(lowered) if w not in STOPWORDS and len(w) > 1]
    for run in _CJK_RUN.findall(lowered):
        words.extend(run[i : i + 2] for i in range(max(1, len(run) - 1)))
    return words


def cjk_runs(text: str) -> list[str]:
    """The runs of CJK characters in ``text`` (lower-cased like :func:`terms`)."""
    return _CJK_RUN.findall(text.lower())


def is_cjk(text: str) -> bool:
    """True when ``text`` is (or starts with) a Chinese, Japanese or Korean character."""
    return bool(text) and _CJK_RUN.match(text) is not None


def idf_weights(query: Iterable[str], documents: Sequence[set[str]]) -> dict[str, float]:
    """IDF of each query term over ``documents``: rare terms weigh more, absent ones most."""
    n = len(documents)
    return {t: math.log(1.0 + (n + 1) / (0.5 + sum(t in d for d in documents))) for t in set(query)}


def coverage(query: Sequence[str], weights: dict[str, float], words: set[str]) -> float:
    """Share (0..1) of the query's IDF weight whose terms occur in ``words``."""
    total = sum(weights[t] for t in set(query))
    return sum(weights[t] for t in set(query) if t in words) / total if total else 0.0


@dataclass(frozen=True)
class Unit:
    """A selectable piece of a passage: a sentence, or a whole list with its intro."""

    text: str
    order: int
    paragraph: int
    is_list: bool

    @property
    def words(self) -> set[str]:
        return set(terms(self.text))

    @property
    def anaphoric(self) -> bool:
        return self.text.lower().startswith(_ANAPHORA)


def segment(text: str) -> list[Unit]:
    """Split plain/markdown text into sentences and list blocks, in document order.

    Headings are dropped. Consecutive list items (and their indented continuation lines)
    form one unit, joined with the sentence just before them when it ends with ``:``.
    """
    units: list[Unit] = []
    paragraph = 0
    buffer: list[str] = []
    items: list[str] = []

    def flush_paragraph() -> None:
        nonlocal paragraph
        if buffer:
            for sentence in _SENTENCE_END.split(" ".join(buffer)):
                if sentence.strip():
                    units.append(Unit(sentence.strip(), len(units), paragraph, False))
            buffer.clear()
            paragraph += 1

    def flush_list() -> None:
        nonlocal paragraph
        if items:
            block = "\n".join(items)
            if units and not units[-1].is_list and units[-1].text.endswith(":") and units[-1].paragraph == paragraph - 1:
                intro = units.pop()
                block = f"{intro.text}\n{block}"
            units.append(Unit(block, len(units), paragraph, True))
            items.clear()
            paragraph += 1

    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:  # a blank line ends a paragraph; a list goes on if items follow
            flush_paragraph()
            continue
        if _HEADING.match(line):
            flush_paragraph()
            flush_list()
            continue
        if _LIST_ITEM.match(line):
            flush_paragraph()
            items.append(stripped)
        elif items and line[:1].isspace():
            items[-1] += " " + stripped
        else:
            flush_list()
            buffer.append(stripped)
    flush_paragraph()
    flush_list()
    return units


def faq_answer(text: str) -> str:
    """The answer part of an FAQ chunk written as ``Q: ...\\nA: ...``."""
    match = re.search(r"(?:^|\n)\s*A:\s*", text)
    if match:
        return text[match.end():].strip()
    lines = text.strip().splitlines()
    if lines and lines[0].lstrip().startswith("Q:"):
        return "\n".join(lines[1:]).strip()
    return text.strip()

