"""The ``extractive`` backend: answers from the retrieved passages, no language model.

This is what a fresh install answers with, so it aims to be a good support answer:

- the leading passage is an FAQ → its answer, verbatim, cited;
- an article → the part of it that answers: the whole section when the question names
  the section's heading and the section is short, else its sentences most related to the
  question (a numbered or bulleted list or a table stays whole; a sentence that opens a
  list brings the list; one that starts with "it"/"this" brings the sentence before), in
  document order, cited; a second article adds its sentences that are as relevant;
- nothing relevant → it abstains, plainly, and offers a person.

Relevance. A passage is relevant when it contains enough of the question's words
(``min_overlap``: the share of the question's IDF-weighted, lightly stemmed content words;
a misspelt word matches a word one edit away; CJK text counts character pairs) or is
close enough in meaning (``min_vector_score``: the retriever's cosine similarity; a little
lower when the word search found the passage too, so both rankings agree). Even then the
answer abstains when the question names something (a capitalised name: a product, a
company) that no retrieved passage mentions: the help centre is about something else.

Which passage leads. The relevant passages are re-ranked by agreement (reciprocal rank
fusion) of four rankings: the retriever's, by meaning (the passage's similarity to the
question, or its innermost heading's when that is higher), by the passage's words and by
its innermost heading's words. An FAQ whose question restates the user's (similarity at
least 0.8) leads regardless: it is a curated answer.

Sentences are scored by words (weighted overlap, a small bonus for a list answering a
"how do I" question); with ``semantic: true`` also by meaning, with the knowledge base's
embedding model (off by default: it measured worse, see the option). A follow-up question
is read with the previous user message in mind, exactly as retrieval reads it
(:func:`knowledge.query.contextualize`), its own words weighing more.

Document markup never comes out as HTML: tags are stripped and the output is plain text
or Markdown.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from botkit.backends import _text
from botkit.backends.base import Backend, Completion, Prompt, Usage
from knowledge.query import contextualize
from knowledge.types import Passage
from knowledge.vector_cache import VectorCache

if TYPE_CHECKING:
    from botkit.config import BotConfig

log = logging.getLogger(__name__)

ABSTAIN_MESSAGE = (
    "I couldn't find that in our help centre. Would you like me to connect you with a person? "
    "Just say 'talk to a human'."
)
_RATIO = 0.6  # lexical scoring: a sentence joins the answer when it scores at least this share of the best one
_MARGIN = 0.08  # semantic scoring: ... when it scores within this of the best one
_LEXICAL_WEIGHT = 0.5  # weight of word overlap next to cosine similarity in a sentence's score
_CONTEXT_WEIGHT = 0.5
_AGREEMENT = 0.05  # a passage both searches found may be this much less similar and still count as relevant
_EMBED_CHARS = 240  # characters of a sentence or list the embedding model reads
SENTENCE_CACHE_SIZE = 4096  # sentence vectors kept: popular articles come back question after question
_WHOLE_SECTION = 2 / 3  # share of the question's words a heading must hold for its short section to be the answer
_FAQ_MATCH = 0.8  # an FAQ whose question is this similar to the user's restates it: its answer leads  # weight of the words of the earlier message(s) of a follow-up
_PROCEDURAL = {"how", "steps", "step", "set", "setup", "install", "configure", "change", "reset", "enable", "create"}
_SENTENCE_START = re.compile(r"(?:^|[.!?:;]\s+|[\"'(]\s*)([A-Z][a-z]+)")

Embed = Callable[[Sequence[str]], Any]


class ExtractiveOptions(BaseModel):
    """Settings of the extractive backend."""

    model_config = ConfigDict(extra="forbid")

    min_overlap: float = Field(
        0.34, ge=0.0, le=1.0, description="Share of the question's weighted words a passage must contain."
    )
    min_vector_score: float | None = Field(
        0.45, ge=0.0, le=1.0,
        description="Vector similarity at which a passage counts as relevant without shared words; None: never.",
    )
    candidates: int = Field(5, ge=1, le=20, description="Top retrieved passages considered.")
    max_passages: int = Field(2, ge=1, le=5, description="Articles an answer may draw from.")
    max_sentences: int = Field(4, ge=1, le=20)
    max_chars: int = Field(600, ge=80, le=5000, description="Length budget of an article answer (a single list may run to 1.5x).")
    semantic: bool = Field(
        False,
        description=(
            "Also rank passages' headings and score sentences with the knowledge base's embedding model (inside a bot). "
            "Off by default: with all-MiniLM-L6-v2 it answered fewer questions fully than words alone on both "
            "benchmarks/bench_answer_quality.py sets, and costs tens of milliseconds per answer."
        ),
    )
    unknown_names_abstain: bool = Field(
        True, description="Abstain when the question names something (a capitalised name) no retrieved passage mentions.",
    )
    inline_citations: bool = Field(True, description="Append [n] markers to the text (``cited`` is always set).")
    abstain_message: str = ABSTAIN_MESSAGE


@dataclass
class _Query:
    """The question as the backend scores it: weighted terms, the text to embed."""

    terms: list[str]
    weights: dict[str, float]
    text: str
    procedural: bool
    own: str = ""  # the question alone, when ``text`` adds earlier messages

    def coverage(self, words: set[str]) -> float:
        """Share (0..1) of the query's weight whose terms occur in ``words`` (a typo counts).

        CJK character pairs count by the share of the question's CJK characters that a
        matching pair covers: pairs that straddle two words match nothing anywhere, and
        weighting them like words would hide a good match.
        """
        total = sum(self.weights.values())
        if not total:
            return 0.0
        found = 0.0
        cjk_weight = 0.0
        for term, weight in self.weights.items():
            if _text.is_cjk(term):
                cjk_weight += weight
            elif term in words:
                found += weight
            elif len(term) >= 5 and any(_close(term, w) for w in words):
                found += 0.8 * weight
        if cjk_weight:
            found += cjk_weight * _cjk_share(self.own or self.text, words)
        return found / total


class ExtractiveBackend(Backend):
    """Extractive answers from ``prompt.passages`` and ``prompt.question``."""

    kind = "extractive"
    needs_llm_prompt = False
    max_context_tokens = 1_000_000
    Options = ExtractiveOptions
    options: ExtractiveOptions

    def __init__(
        self, *, model: str = "", options: BaseModel | None = None, config: BotConfig | None = None,
        embed: Embed | None = None,
    ) -> None:
        super().__init__(model=model, options=options, config=config)
        self._embed = embed
        self._vectors = VectorCache(SENTENCE_CACHE_SIZE)

    async def generate(self, prompt: Prompt, *, timeout: float) -> Completion:
        """Answer from the passages (CPU work: milliseconds; sentence embeddings a few tens of them)."""
        history = [m.content for m in prompt.messages[:-1] if m.role == "user"]
        if self._embedder() is None:
            return self.answer(prompt.question, prompt.passages, history=history)
        return await asyncio.to_thread(self.answer, prompt.question, prompt.passages, history=history)

    def answer(self, question: str, passages: list[Passage], *, history: Sequence[str] = ()) -> Completion:
        """The synchronous core of :meth:`generate` (``history``: earlier user messages, oldest first)."""
        opts = self.options
        pool = passages[: opts.candidates]
        prompt_tokens = self.count_tokens(question) + sum(self.count_tokens(p.text) for p in pool)
        bags = [set(_text.terms(f"{p.title} {p.section} {_text.strip_markup(p.text)}")) for p in pool]
        query = self._query(question, history, bags)
        overlaps = [query.coverage(bag) for bag in bags]
        relevant = [i for i, p in enumerate(pool) if self._relevant(p, overlaps[i])]
        if not relevant or (opts.unknown_names_abstain and _unknown_names(question, pool)):
            return self._done(opts.abstain_message, prompt_tokens, (), abstained=True)
        heads = [query.coverage(set(_text.terms(_leaf(p.section)))) if p.section else 0.0 for p in pool]
        scorer = _Scorer(query, self._embedder(), self._vectors)
        headings = scorer.headings(pool, relevant)
        relevant = _agreement(relevant, [
            {i: max(pool[i].vector_score or 0.0, headings.get(i, heads[i])) for i in relevant},
            {i: overlaps[i] for i in relevant},
            {i: heads[i] for i in relevant},
        ])
        faqs = [i for i in relevant if pool[i].kind == "faq" and (pool[i].vector_score or 0.0) >= _FAQ_MATCH]
        if faqs:  # a curated answer to (nearly) this very question leads
            relevant.remove(faqs[0])
            relevant.insert(0, faqs[0])
        first = relevant[0]
        if pool[first].kind == "faq":
            return self._done(self._faq(pool[first], first + 1), prompt_tokens, (first + 1,))
        articles = [i for i in relevant if pool[i].kind != "faq"][: opts.max_passages]
        parts: list[tuple[int, str]] = []
        budget = opts.max_chars
        best: float | None = None  # the lead article's best unit score
        for index in articles:
            whole = heads[index] >= _WHOLE_SECTION and best is None
            excerpt, top = self._excerpt(pool[index], query, scorer, budget, best=best, whole=whole)
            best = top if best is None else best
            if excerpt:
                parts.append((index + 1, excerpt))
                budget -= len(excerpt)
            if budget < 80:
                break
        if not parts:
            return self._done(opts.abstain_message, prompt_tokens, (), abstained=True)
        parts.sort()  # in the retriever's order, so citations read [1], [2]… like footnotes
        text = "\n\n".join(f"{body} [{n}]" if opts.inline_citations else body for n, body in parts)
        return self._done(text, prompt_tokens, tuple(n for n, _ in parts))

    # -- relevance ---------------------------------------------------------------------
    def _query(self, question: str, history: Sequence[str], bags: list[set[str]]) -> _Query:
        own = _text.terms(question)
        text = contextualize(question, history)
        context = [t for t in _text.terms(text[: max(0, len(text) - len(question.strip()))]) if t not in own]
        weights = _text.idf_weights(own + context, bags or [set()])
        for term in set(context):
            weights[term] *= _CONTEXT_WEIGHT
        procedural = bool(_PROCEDURAL & set(re.findall(r"[a-z]+", question.lower())))
        return _Query(own + context, weights, text, procedural, question.strip() if text != question.strip() else "")

    def _relevant(self, passage: Passage, overlap: float) -> bool:
        floor = self.options.min_vector_score
        if floor is not None and passage.lexical_rank is not None:
            floor -= _AGREEMENT  # the word search found it too: the two rankings agree
        return overlap >= self.options.min_overlap or (
            floor is not None and passage.vector_score is not None and passage.vector_score >= floor
        )

    def _faq(self, passage: Passage, number: int) -> str:
        answer = passage.metadata.get("answer")
        text = answer if isinstance(answer, str) and answer.strip() else _text.faq_answer(passage.text)
        text = _text.strip_markup(text)
        return f"{text} [{number}]" if self.options.inline_citations else text

    # -- sentence selection ------------------------------------------------------------
    def _embedder(self) -> Embed | None:
        if self._embed is not None or not self.options.semantic or self.config is None:
            return self._embed
        try:
            from knowledge.embeddings import embedder_for

            # Sentences are short texts: the query path (ONNX Runtime where it runs), in one call.
            self._embed = embedder_for(self.config.knowledge).embed_queries
        except Exception as exc:  # noqa: BLE001 - sentence scoring falls back to words, the answer still comes
            log.warning("extractive: no embedding model for sentence scoring (%s); scoring by words only", exc)
            self.options = self.options.model_copy(update={"semantic": False})
        return self._embed

    def _excerpt(
        self, passage: Passage, query: _Query, scorer: _Scorer, budget: int, *, best: float | None, whole: bool,
    ) -> tuple[str, float]:
        """The best units of ``passage`` within ``budget`` characters, in document order,
        and the best unit's score.

        ``whole``: the question names this passage's section, so the section is the answer
        when it fits. Units scoring clearly under the best one (``best``: the lead article's
        best score, for a supporting article) are left out, so an answer stays on the point.
        """
        units = _text.segment(_text.strip_markup(passage.text))
        if not units:
            return "", 0.0
        if whole and sum(len(u.text) + 1 for u in units) <= budget:
            return _join(units), 1.0
        scores = scorer.score(units)
        ranked = sorted(units, key=lambda u: scores[u.order], reverse=True)
        top = scores[ranked[0].order]
        floor = scorer.floor(top if best is None else best, lead=best is None)
        if top <= 0.0:
            if best is not None:
                return "", 0.0
            ranked, floor = units, float("-inf")  # related by meaning only: the passage's lead answers best
        elif top < floor:
            return "", top
        chosen: list[_text.Unit] = []
        taken: set[int] = set()
        used = 0
        limit = self.options.max_sentences

        def add(unit: _text.Unit) -> None:
            nonlocal used
            chosen.append(unit)
            taken.add(unit.order)
            used += len(unit.text) + 1

        for unit in ranked:
            if chosen and (scores[unit.order] < floor or len(taken) >= limit):
                break
            if unit.order in taken:
                continue
            cost = len(unit.text) + 1
            if chosen and used + cost > budget:
                continue
            if not chosen and unit.is_list and cost > budget * 1.5:
                unit = _trim_list(unit, int(budget * 1.5))
            add(unit)
            following = units[unit.order + 1] if unit.order + 1 < len(units) else None
            if unit.text.endswith(":") and following is not None and following.order not in taken:
                if following.is_list and len(following.text) > budget - used:
                    following = _trim_list(following, max(80, budget - used))
                if used + len(following.text) <= budget * 1.5:
                    add(following)  # a sentence that opens a list or a table brings it
            previous = units[unit.order - 1] if unit.order else None
            if unit.anaphoric and previous is not None and previous.order not in taken and used + len(previous.text) <= budget:
                add(previous)
        chosen.sort(key=lambda u: u.order)
        return _join(chosen), top

    def _done(self, text: str, prompt_tokens: int, cited: tuple[int, ...], *, abstained: bool = False) -> Completion:
        return Completion(text, Usage(prompt_tokens, self.count_tokens(text)), self.spec, abstained=abstained, cited=cited)


class _Scorer:
    """Scores a passage's units against the query: cosine similarity plus word overlap
    when an embedding model is at hand, word overlap (with small list/position terms) else."""

    def __init__(self, query: _Query, embed: Embed | None, cache: VectorCache | None = None) -> None:
        self.query = query
        self.embed = embed
        self.cache = cache or VectorCache(SENTENCE_CACHE_SIZE)
        self._queries: Any = None

    def similarities(self, texts: list[str]) -> Any:
        """Cosine similarity of each text to the question (``None`` without a model).

        A follow-up counts the mean of its similarities with and without its context.
        Texts are cut to :data:`_EMBED_CHARS` characters: a sentence's meaning is in its
        start, and long lists would make every call slow.
        """
        if self.embed is None or not texts:
            return None
        try:
            if self._queries is None:
                self._queries = self.embed([self.query.text, self.query.own] if self.query.own else [self.query.text])
            vectors = self.cache.vectors([t[:_EMBED_CHARS] for t in texts], self.embed)
        except Exception as exc:  # noqa: BLE001 - fall back to words for this answer
            log.warning("extractive: sentence embedding failed (%s); scoring by words only", exc)
            self.embed = None
            return None
        return (vectors @ self._queries.T).mean(axis=1)

    def headings(self, pool: list[Passage], indexes: list[int]) -> dict[int, float]:
        """Similarity of the question to each passage's heading: an FAQ's question, an
        article's title and section. A question that restates a heading is answered there."""
        if len(indexes) < 2:
            return {}
        sims = self.similarities([_heading(pool[i]) for i in indexes])
        return {} if sims is None else {i: float(v) for i, v in zip(indexes, sims, strict=True)}

    def score(self, units: list[_text.Unit]) -> list[float]:
        lexical = [self.query.coverage(u.words) for u in units]
        total = len(units)
        sims = self.similarities([u.text for u in units])
        if sims is not None:
            return [
                float(s) + _LEXICAL_WEIGHT * lex + (0.1 if unit.is_list and self.query.procedural else 0.0)
                for s, lex, unit in zip(sims, lexical, units, strict=True)
            ]
        scores = []
        for unit, value in zip(units, lexical, strict=True):
            if value and unit.is_list and self.query.procedural:
                value += 0.15
            scores.append(value + 0.05 * (1 - unit.order / total) if value else 0.0)
        return scores

    def floor(self, best: float, *, lead: bool = True) -> float:
        """The score a unit needs to join an answer whose best unit scores ``best``
        (``lead``: of the lead article; a supporting article's units must be as good)."""
        if self.embed is None:
            return _RATIO * best
        return best - _MARGIN if lead else best - _MARGIN / 4


def _leaf(section: str) -> str:
    """The innermost heading of a section path such as ``Billing > Refunds``."""
    return section.rsplit(" > ", 1)[-1]


def _heading(passage: Passage) -> str:
    if passage.kind == "faq" or not passage.section:
        return passage.title
    return _leaf(passage.section)  # the title is shared by every section of an article: it tells none apart


def _cjk_share(text: str, words: set[str]) -> float:
    """Share of the CJK characters of ``text`` inside a character pair found in ``words``."""
    total = covered = 0
    for run in _text.cjk_runs(text):
        marks = [False] * len(run)
        for i in range(len(run) - 1):
            if run[i : i + 2] in words:
                marks[i] = marks[i + 1] = True
        total += len(run)
        covered += sum(marks)
    return covered / total if total else 0.0


def _agreement(order: list[int], signals: list[dict[int, float]], k: float = 3.0) -> list[int]:
    """``order`` (the retriever's ranking) re-ranked by reciprocal rank fusion with the
    rankings by each signal: a passage that every signal puts near the top leads."""
    fused = {i: 1.0 / (k + rank) for rank, i in enumerate(order)}
    for signal in signals:
        for i in order:  # equal values share a rank
            fused[i] += 1.0 / (k + sum(1 for j in order if signal[j] > signal[i] + 1e-9))
    return sorted(order, key=lambda i: -fused[i])


def _unknown_names(question: str, passages: Sequence[Passage]) -> list[str]:
    """Capitalised names inside the question (not a sentence's first word) that no passage mentions."""
    starts = {m.start(1) for m in _SENTENCE_START.finditer(question)}
    names = {m.group(0) for m in re.finditer(r"\b[A-Z][a-z]{2,}\w*", question) if m.start() not in starts}
    if not names:
        return []
    words = set()
    for p in passages:
        words.update(w.casefold() for w in re.findall(r"\w+", f"{p.title} {p.section} {p.text}"))
    unknown = []
    for name in sorted(names):
        key = name.casefold()
        if key in words or key.rstrip("s") in words or (len(key) >= 5 and any(_close(key, w) for w in words)):
            continue
        unknown.append(name)
    return unknown


def _close(a: str, b: str) -> bool:
    """True when ``a`` and ``b`` are one edit apart (insert, delete, substitute, swap)."""
    if a == b:
        return True
    la, lb = len(a), len(b)
    if abs(la - lb) > 1 or min(la, lb) < 3 or a[0] != b[0] and a[1:2] != b[1:2]:
        return False
    if la == lb:
        diff = [i for i in range(la) if a[i] != b[i]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]])
    if la > lb:
        a, b = b, a
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    return a[i:] == b[i + 1 :]


def _trim_list(unit: _text.Unit, limit: int) -> _text.Unit:
    kept: list[str] = []
    for line in unit.text.split("\n"):
        if kept and sum(len(k) + 1 for k in kept) + len(line) > limit:
            break
        kept.append(line)
    return _text.Unit("\n".join(kept), unit.order, unit.paragraph, True)


def _join(units: list[_text.Unit]) -> str:
    out = ""
    for index, unit in enumerate(units):
        if index == 0:
            out = unit.text
        elif unit.is_list or units[index - 1].is_list or unit.paragraph != units[index - 1].paragraph:
            out += "\n\n" + unit.text
        elif _text.is_cjk(out[-1:]):
            out += unit.text
        else:
            out += " " + unit.text
    return out


__all__ = ["ABSTAIN_MESSAGE", "ExtractiveBackend", "ExtractiveOptions"]
