"""The ``extractive`` backend: answers from the retrieved passages, no language model.

This is what a fresh install answers with, so it aims to be a good support answer:

- the best relevant passage is an FAQ → its answer, verbatim, cited;
- an article → its few sentences most related to the question (a numbered or bulleted
  list stays whole), in document order, cited; a second article adds its best
  sentences when it is relevant too;
- nothing relevant → it abstains, plainly, and offers a person.

Relevance is lexical (the share of the question's IDF-weighted, lightly stemmed content
words that a passage contains, ``min_overlap``) or semantic (the retriever's
``vector_score`` at or above ``min_vector_score``). Document markup never comes out as
HTML: tags are stripped and the output is plain text or Markdown.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from botkit.backends import _text
from botkit.backends.base import Backend, Completion, Prompt, Usage
from knowledge.types import Passage

if TYPE_CHECKING:
    from botkit.config import BotConfig

ABSTAIN_MESSAGE = (
    "I couldn't find that in our help centre. Would you like me to connect you with a person? "
    "Just say 'talk to a human'."
)
_RATIO = 0.6  # a sentence joins the answer when it scores at least this share of the best one
_PROCEDURAL = {"how", "steps", "step", "set", "setup", "install", "configure", "change", "reset", "enable", "create"}


class ExtractiveOptions(BaseModel):
    """Settings of the extractive backend."""

    model_config = ConfigDict(extra="forbid")

    min_overlap: float = Field(
        0.34, ge=0.0, le=1.0, description="Share of the question's weighted words a passage must contain."
    )
    min_vector_score: float | None = Field(
        0.5, ge=0.0, le=1.0,
        description="Vector similarity at which a passage counts as relevant without shared words; None: never.",
    )
    candidates: int = Field(3, ge=1, le=20, description="Top retrieved passages considered.")
    max_passages: int = Field(2, ge=1, le=5, description="Articles an answer may draw from.")
    max_sentences: int = Field(4, ge=1, le=20)
    max_chars: int = Field(600, ge=80, le=5000, description="Length budget of an article answer (a single list may run to 1.5x).")
    inline_citations: bool = Field(True, description="Append [n] markers to the text (``cited`` is always set).")
    abstain_message: str = ABSTAIN_MESSAGE


class ExtractiveBackend(Backend):
    """Extractive answers from ``prompt.passages`` and ``prompt.question``."""

    kind = "extractive"
    needs_llm_prompt = False
    max_context_tokens = 1_000_000
    Options = ExtractiveOptions
    options: ExtractiveOptions

    def __init__(self, *, model: str = "", options: BaseModel | None = None, config: BotConfig | None = None) -> None:
        super().__init__(model=model, options=options, config=config)

    async def generate(self, prompt: Prompt, *, timeout: float) -> Completion:
        """Answer from the passages (pure CPU work, microseconds to milliseconds)."""
        return self.answer(prompt.question, prompt.passages)

    def answer(self, question: str, passages: list[Passage]) -> Completion:
        """The synchronous core of :meth:`generate`."""
        opts = self.options
        query = _text.terms(question)
        pool = passages[: opts.candidates]
        bags = [set(_text.terms(f"{p.title} {p.section} {_text.strip_markup(p.text)}")) for p in passages]
        weights = _text.idf_weights(query, bags or [set()])
        relevant = [i for i, p in enumerate(pool) if self._relevant(p, _text.coverage(query, weights, bags[i]))]
        prompt_tokens = self.count_tokens(question) + sum(self.count_tokens(p.text) for p in pool)
        if not relevant:
            return self._done(opts.abstain_message, prompt_tokens, (), abstained=True)
        first = relevant[0]
        if pool[first].kind == "faq":
            return self._done(self._faq(pool[first], first + 1), prompt_tokens, (first + 1,))
        procedural = bool(_PROCEDURAL & set(re.findall(r"[a-z]+", question.lower())))
        articles = [i for i in relevant if pool[i].kind != "faq"][: opts.max_passages]
        parts: list[tuple[int, str]] = []
        budget = opts.max_chars
        best: float | None = None  # the lead article's best sentence score
        for index in articles:
            excerpt, top = self._excerpt(pool[index], query, weights, budget, best=best, procedural=procedural)
            best = top if best is None else best
            if excerpt:
                parts.append((index + 1, excerpt))
                budget -= len(excerpt)
            if budget < 80:
                break
        if not parts:
            return self._done(opts.abstain_message, prompt_tokens, (), abstained=True)
        text = "\n\n".join(f"{body} [{n}]" if opts.inline_citations else body for n, body in parts)
        return self._done(text, prompt_tokens, tuple(n for n, _ in parts))

    def _relevant(self, passage: Passage, overlap: float) -> bool:
        floor = self.options.min_vector_score
        return overlap >= self.options.min_overlap or (
            floor is not None and passage.vector_score is not None and passage.vector_score >= floor
        )

    def _faq(self, passage: Passage, number: int) -> str:
        answer = passage.metadata.get("answer")
        text = answer if isinstance(answer, str) and answer.strip() else _text.faq_answer(passage.text)
        text = _text.strip_markup(text)
        return f"{text} [{number}]" if self.options.inline_citations else text

    def _excerpt(
        self, passage: Passage, query: list[str], weights: dict[str, float], budget: int, *,
        best: float | None, procedural: bool,
    ) -> tuple[str, float]:
        """The best units of ``passage`` within ``budget`` characters, in document order,
        and the best unit's score.

        Units scoring under ``_RATIO`` times the best (``best``: the lead article's best
        score, for a supporting article) are left out, so an answer stays on the point.
        """
        units = _text.segment(_text.strip_markup(passage.text))
        if not units:
            return "", 0.0
        total = len(units)

        def score(unit: _text.Unit) -> float:
            value = _text.coverage(query, weights, unit.words)
            if value and unit.is_list and procedural:
                value += 0.15
            return value + 0.05 * (1 - unit.order / total) if value else 0.0

        ranked = sorted(units, key=score, reverse=True)
        top = score(ranked[0])
        floor = _RATIO * (top if best is None else best)
        if top == 0.0:
            if best is not None:
                return "", 0.0
            ranked, floor = units, -1.0  # related by meaning only: the passage's lead answers best
        elif top < floor:
            return "", top
        chosen: list[_text.Unit] = []
        used = 0
        limit = self.options.max_sentences
        for unit in ranked:
            if chosen and (score(unit) < floor or len(chosen) >= limit):
                break
            cost = len(unit.text) + 1
            if chosen and used + cost > budget:
                continue
            if not chosen and unit.is_list and cost > budget * 1.5:
                unit = _trim_list(unit, int(budget * 1.5))
            chosen.append(unit)
            used += len(unit.text) + 1
            previous = units[unit.order - 1] if unit.order else None
            if unit.anaphoric and previous is not None and previous not in chosen and used + len(previous.text) <= budget:
                chosen.append(previous)
                used += len(previous.text) + 1
        chosen.sort(key=lambda u: u.order)
        return _join(chosen), top

    def _done(self, text: str, prompt_tokens: int, cited: tuple[int, ...], *, abstained: bool = False) -> Completion:
        return Completion(text, Usage(prompt_tokens, self.count_tokens(text)), self.spec, abstained=abstained, cited=cited)


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
        else:
            out += " " + unit.text
    return out


__all__ = ["ABSTAIN_MESSAGE", "ExtractiveBackend", "ExtractiveOptions"]
