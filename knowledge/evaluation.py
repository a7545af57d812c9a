"""Retrieval quality: hit@k and mean reciprocal rank over a question set.

A question set is JSON Lines, one object per line with at least ``question`` and
``expected_sources`` (source names; a name without ``#`` also matches its FAQ pairs, see
:func:`knowledge.types.source_matches`). Optional: ``id``, ``kind`` (for a per-kind
breakdown) and ``history`` (earlier user messages, used through
:func:`knowledge.query.contextualize`). Lines with an empty ``expected_sources`` (questions
the knowledge base should not answer) are skipped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from knowledge.errors import KnowledgeConfigError
from knowledge.query import contextualize
from knowledge.types import Passage, source_matches

CUTOFFS = (1, 3, 5)


@dataclass(frozen=True)
class EvalQuestion:
    """One line of a question set."""

    question: str
    expected_sources: tuple[str, ...]
    history: tuple[str, ...] = ()
    id: str = ""
    kind: str = ""

    @property
    def query(self) -> str:
        """The history-aware retrieval query."""
        return contextualize(self.question, self.history)


@dataclass
class RetrievalMetrics:
    """hit@1/3/5 and MRR over ``n`` questions, with the rank of each question's first hit."""

    n: int = 0
    hits: dict[int, int] = field(default_factory=lambda: {c: 0 for c in CUTOFFS})
    reciprocal_sum: float = 0.0
    ranks: dict[str, int | None] = field(default_factory=dict)

    def add(self, question: EvalQuestion, rank: int | None) -> None:
        """Count one question whose first relevant passage is at 1-based ``rank`` (None: missed)."""
        self.n += 1
        self.ranks[question.id or question.question] = rank
        if rank is not None:
            self.reciprocal_sum += 1.0 / rank
            for cutoff in CUTOFFS:
                if rank <= cutoff:
                    self.hits[cutoff] += 1

    def to_dict(self) -> dict[str, Any]:
        """``{"n", "hit@1", "hit@3", "hit@5", "mrr"}`` rounded to 4 digits."""
        data: dict[str, Any] = {"n": self.n}
        for cutoff in CUTOFFS:
            data[f"hit@{cutoff}"] = round(self.hits[cutoff] / self.n, 4) if self.n else 0.0
        data["mrr"] = round(self.reciprocal_sum / self.n, 4) if self.n else 0.0
        return data


def load_questions(path: Path) -> list[EvalQuestion]:
    """The questions of a JSONL file that have expected sources."""
    questions: list[EvalQuestion] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise KnowledgeConfigError(f"cannot read question set {path}: {exc.strerror or exc}") from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            question = str(item["question"])
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise KnowledgeConfigError(
                f"{path}:{number}: not a JSON object with a \"question\" ({exc.__class__.__name__}); fix the line"
            ) from exc
        expected = item.get("expected_sources") or []
        if not expected:
            continue
        history = item.get("history") or []
        questions.append(
            EvalQuestion(
                question=question,
                expected_sources=tuple(str(s) for s in expected),
                history=tuple(str(h) for h in history),
                id=str(item.get("id", "")),
                kind=str(item.get("kind", "")),
            )
        )
    return questions


def first_hit(passages: Sequence[Passage], expected: Iterable[str]) -> int | None:
    """The 1-based rank of the first passage matching an expected source, or None."""
    expected = list(expected)
    for rank, passage in enumerate(passages, start=1):
        if any(source_matches(passage.source, name) for name in expected):
            return rank
    return None


def evaluate(
    search: Callable[[EvalQuestion], Sequence[Passage]], questions: Iterable[EvalQuestion]
) -> tuple[RetrievalMetrics, dict[str, RetrievalMetrics]]:
    """Run ``search`` on every question: overall metrics and metrics per ``kind``."""
    overall = RetrievalMetrics()
    by_kind: dict[str, RetrievalMetrics] = {}
    for question in questions:
        rank = first_hit(search(question), question.expected_sources)
        overall.add(question, rank)
        by_kind.setdefault(question.kind or "-", RetrievalMetrics()).add(question, rank)
    return overall, dict(sorted(by_kind.items()))
