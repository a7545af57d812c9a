"""The knowledge-gap finder: what visitors ask that the help centre does not answer.

The questions the bot abstained on, handed to a person, or got a thumbs-down for are
embedded with the knowledge base's own model, clustered by meaning (agglomerative
clustering, average linkage on cosine distance, cut at ``console.gap_distance``), and
each cluster is labelled with its most central question and its top TF-IDF terms, and
paired with the nearest existing source. Sorted by size: write the first one first.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, cast

import numpy as np
from sqlalchemy import Table, and_, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import aliased

from botkit._tables import reading
from botkit.inbox import is_bare_request
from botkit.store.models import ConversationRow, FeedbackRow, MessageRow

_conversations = cast(Table, ConversationRow.__table__)
_messages = cast(Table, MessageRow.__table__)
_feedback = cast(Table, FeedbackRow.__table__)
MAX_QUESTIONS = 5000  # agglomerative clustering is quadratic in memory


@dataclass(frozen=True)
class GapQuestion:
    """A visitor question the bot did not answer well, and why it counts."""

    text: str
    reasons: tuple[str, ...]
    conversation_id: str
    message_id: int
    created_at: datetime | None = None


@dataclass
class GapCluster:
    """Questions about one missing (or weak) topic."""

    label: str
    terms: list[str]
    size: int
    reasons: dict[str, int]
    examples: list[str]
    conversation_ids: list[str] = field(default_factory=list)
    nearest_source: str | None = None
    nearest_title: str | None = None
    nearest_score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"label": self.label, "terms": self.terms, "size": self.size, "reasons": self.reasons,
                "examples": self.examples, "conversation_ids": self.conversation_ids,
                "nearest_source": self.nearest_source, "nearest_title": self.nearest_title,
                "nearest_score": self.nearest_score}


async def gap_questions(engine: AsyncEngine, *, bot: str | None, since: datetime) -> list[GapQuestion]:
    """Questions from conversations of ``bot`` started since ``since``: abstained on
    (``abstained``), rated down (``thumbs_down``) or that led to a handoff (``handoff``)."""
    c, u = _conversations.c, _messages.c
    reply = aliased(_messages)
    scope = select(c.id).where(c.created_at >= since)
    if bot is not None:
        scope = scope.where(c.bot == bot)
    abstained = (select(u.id, u.conversation_id, u.text, u.created_at)
                 .join(reply, and_(reply.c.reply_to == u.id, reply.c.abstained.is_(True)))
                 .where(u.role == "user", u.conversation_id.in_(scope)))
    f = _feedback.c
    rated_down = (select(u.id, u.conversation_id, u.text, u.created_at)
                  .join(reply, reply.c.reply_to == u.id).join(_feedback, f.message_id == reply.c.id)
                  .where(f.rating < 0, u.role == "user", u.conversation_id.in_(scope)))
    found: dict[int, GapQuestion] = {}

    def add(row: Any, reason: str) -> None:
        known = found.get(row.id)
        reasons = (known.reasons if known else ()) + ((reason,) if not known or reason not in known.reasons else ())
        found[row.id] = GapQuestion(row.text, reasons, row.conversation_id, row.id, row.created_at)

    async with reading(engine, "find knowledge gaps") as conn:
        for row in (await conn.execute(abstained)).all():
            add(row, "abstained")
        for row in (await conn.execute(rated_down)).all():
            add(row, "thumbs_down")
        # handoff_at stays in the metadata after a conversation is handed back or closed.
        rows = (await conn.execute(select(c.id, c["metadata"]).where(c.id.in_(scope)))).all()
        handoffs = {r.id: r._mapping["metadata"].get("handoff_at") for r in rows if r._mapping["metadata"]}
        handoffs = {k: v for k, v in handoffs.items() if isinstance(v, (int, float))}
        if handoffs:
            users = (select(u.id, u.conversation_id, u.text, u.created_at)
                     .where(u.role == "user", u.conversation_id.in_(list(handoffs))).order_by(u.seq))
            by_conversation: dict[str, list[Any]] = {}
            for row in (await conn.execute(users)).all():
                by_conversation.setdefault(row.conversation_id, []).append(row)
            for cid, rows in by_conversation.items():
                trigger = _trigger(rows, float(handoffs[cid]))
                if trigger is not None:
                    add(trigger, "handoff")
    return sorted(found.values(), key=lambda q: q.message_id)[-MAX_QUESTIONS:]


def _trigger(rows: list[Any], handoff_at: float) -> Any | None:
    """The question behind a handoff: the last user message up to it that is not only a request for a person."""
    before = [r for r in rows if _ts(r.created_at) <= handoff_at + 1.0] or rows[:1]
    for row in reversed(before):
        if not is_bare_request(row.text):
            return row
    return None


def _ts(value: datetime) -> float:
    return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()


def _terms(texts: Sequence[str], labels: np.ndarray, top: int = 4) -> dict[int, list[str]]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    try:
        matrix = TfidfVectorizer(stop_words="english", token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z0-9-]+\b").fit(texts)
    except ValueError:  # nothing but stop words
        return {}
    weights = matrix.transform(texts)
    vocabulary = np.array(matrix.get_feature_names_out())
    out: dict[int, list[str]] = {}
    for label in set(labels.tolist()):
        scores = np.asarray(weights[labels == label].sum(axis=0)).ravel()
        order = [i for i in np.argsort(-scores)[:top] if scores[i] > 0]
        out[label] = vocabulary[order].tolist()
    return out


def find_gaps(
    questions: Sequence[GapQuestion], *, embed: Callable[[list[str]], np.ndarray], distance: float = 0.7,
    retriever: Any | None = None, examples: int = 5,
) -> list[GapCluster]:
    """Cluster ``questions`` by meaning; the clusters, largest first.

    ``embed`` returns unit-norm vectors (an :class:`~knowledge.embeddings.Embedder`'s
    ``embed``); ``distance`` is the cosine distance at which clusters stop merging;
    ``retriever`` (optional, a :class:`knowledge.retriever.Retriever`) finds each cluster's
    nearest source, ignoring the relevance threshold.
    """
    if not questions:
        return []
    texts = [q.text for q in questions]
    vectors = np.asarray(embed(texts), dtype=np.float32)
    if len(questions) == 1:
        labels = np.zeros(1, dtype=int)
    else:
        from sklearn.cluster import AgglomerativeClustering

        model = AgglomerativeClustering(n_clusters=None, metric="cosine", linkage="average",
                                        distance_threshold=distance)
        labels = model.fit_predict(vectors)
    terms = _terms(texts, labels)
    clusters = []
    for label in sorted(set(labels.tolist())):
        members = np.flatnonzero(labels == label)
        sims = vectors[members] @ vectors[members].T
        order = members[np.argsort(-sims.sum(axis=1))]  # most central first
        seen: list[str] = []
        for i in order:
            if texts[i].casefold() not in (s.casefold() for s in seen):
                seen.append(texts[i])
        reasons = Counter(r for i in members for r in questions[int(i)].reasons)
        cluster = GapCluster(label=texts[order[0]], terms=terms.get(label, []), size=len(members),
                             reasons=dict(reasons.most_common()), examples=seen[:examples],
                             conversation_ids=sorted({questions[int(i)].conversation_id for i in members})[:20])
        if retriever is not None:
            _nearest(cluster, retriever)
        clusters.append(cluster)
    return sorted(clusters, key=lambda c: (-c.size, c.label))


def _nearest(cluster: GapCluster, retriever: Any) -> None:
    from knowledge.errors import KnowledgeError

    try:
        passages = retriever.retrieve(cluster.label, k=1, threshold=0.0)
    except KnowledgeError:
        return
    if passages:
        cluster.nearest_source, cluster.nearest_title = passages[0].source, passages[0].title
        cluster.nearest_score = round(float(passages[0].score), 3)


async def bot_gaps(bot: Any, engine: AsyncEngine, *, since: datetime) -> list[GapCluster]:
    """The knowledge gaps of a started :class:`~botkit.bot.Bot` since ``since``."""
    questions = await gap_questions(engine, bot=bot.name, since=since)
    if not questions:
        return []
    knowledge = bot.knowledge
    return await asyncio.to_thread(find_gaps, questions, embed=knowledge.embedder.embed,
                                   distance=bot.config.console.gap_distance, retriever=knowledge.retriever)


CSV_COLUMNS = ("rank", "size", "label", "terms", "abstained", "handoff", "thumbs_down", "nearest_source",
               "nearest_title", "nearest_score", "examples")


def gaps_csv(clusters: Sequence[GapCluster]) -> str:
    """The clusters as CSV (one row per cluster, examples joined with `` | ``)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for rank, c in enumerate(clusters, 1):
        writer.writerow([rank, c.size, _cell(c.label), " ".join(c.terms), c.reasons.get("abstained", 0),
                         c.reasons.get("handoff", 0), c.reasons.get("thumbs_down", 0), c.nearest_source or "",
                         _cell(c.nearest_title or ""), "" if c.nearest_score is None else c.nearest_score,
                         _cell(" | ".join(c.examples))])
    return out.getvalue()


def _cell(text: str) -> str:
    """Neutralise spreadsheet formulas (CSV injection): a visitor wrote these texts."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


__all__ = ["GapCluster", "GapQuestion", "bot_gaps", "find_gaps", "gap_questions", "gaps_csv"]
