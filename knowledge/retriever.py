"""Retrieval: a query → ranked :class:`~knowledge.types.Passage` objects.

Modes:

``vector``   nearest chunks in the Chroma collection (cosine similarity).
``lexical``  BM25 over the SQLite FTS5 index (exact words: product names, error codes).
``hybrid``   both lists fused with reciprocal rank fusion, ``Σ 1 / (60 + rank)``
             (Cormack et al. 2009), the default when ``knowledge.hybrid`` is on.

Whatever the mode, :attr:`Passage.score` is the chunk's cosine similarity to the query
(computed from the stored vector for chunks that only the lexical search found), and
passages under ``knowledge.score_threshold`` are dropped. A threshold therefore means the
same in every mode, and "nothing relevant" is an empty list. The order is the mode's own
(the fused order for hybrid).

One exception to the threshold: a lexical hit that contains, as a word, an *identifier*
of the query (a word of three or more characters with a digit in it: an error code, a
SKU, a version such as ``E42``, ``74937-H``, ``2.4.1``) is kept under the threshold.
Sentence embeddings cannot represent such codes (a bare part number scores about 0.1–0.3
against its own spare-part page), and an exact match on one is strong evidence.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np

from knowledge.embeddings import Embedder
from knowledge.lexical import LexicalIndex
from knowledge.observe import emit
from knowledge.settings import KnowledgeSettings
from knowledge.store import StoredChunk, VectorStore
from knowledge.types import Passage

Mode = Literal["hybrid", "vector", "lexical"]
MODES: tuple[str, ...] = ("hybrid", "vector", "lexical")
RRF_K = 60
FILTER_KEYS = ("source", "kind", "origin")
# A code-like word: starts and ends with a letter or digit, may hold . - / _ inside.
_CODE = re.compile(r"[^\W_](?:[\w./-]*[^\W_])?")


class Retriever:
    """Searches one knowledge base. Thread-safe; build it with :class:`knowledge.index.KnowledgeBase`."""

    def __init__(
        self,
        *,
        store: VectorStore,
        lexical: LexicalIndex,
        embedder: Embedder,
        settings: KnowledgeSettings,
        origins: Callable[[], Iterable[str]] | None = None,
    ) -> None:
        self.store = store
        self.lexical = lexical
        self.embedder = embedder
        self.settings = settings
        self._origins = origins

    def retrieve(
        self,
        query: str,
        *,
        k: int | None = None,
        filters: Mapping[str, Any] | None = None,
        mode: Mode | None = None,
        threshold: float | None = None,
    ) -> list[Passage]:
        """The best passages for ``query``, at most ``k`` (default ``knowledge.top_k``).

        ``filters``: ``{"source": "billing/"}`` keeps sources whose name starts with the
        prefix, ``{"kind": "faq"}`` (or a list) keeps that kind, ``{"origin": name}`` one file.
        ``threshold`` overrides ``knowledge.score_threshold`` (cosine similarity).
        """
        if not query.strip():
            return []
        started, found = time.perf_counter(), None  # observed: knowledge.observe "retrieve"
        try:
            vector = self.embedder.embed_query(query)
            found = self.retrieve_by_vector(vector, query_text=query, k=k, filters=filters, mode=mode, threshold=threshold)
            return found
        finally:
            emit("retrieve", seconds=time.perf_counter() - started, passages=len(found or ()), ok=found is not None)

    def retrieve_by_vector(
        self,
        vector: np.ndarray,
        *,
        query_text: str | None = None,
        k: int | None = None,
        filters: Mapping[str, Any] | None = None,
        mode: Mode | None = None,
        threshold: float | None = None,
    ) -> list[Passage]:
        """Like :meth:`retrieve` with a precomputed query vector (unit norm).

        Hybrid and lexical modes need ``query_text``; without it the search is vector-only.
        """
        k = k or self.settings.top_k
        mode = mode or ("hybrid" if self.settings.hybrid else "vector")
        if mode not in MODES:
            raise ValueError(f"unknown retrieval mode {mode!r}; known modes: {', '.join(MODES)}")
        if query_text is None:
            mode = "vector"
        threshold = self.settings.score_threshold if threshold is None else threshold
        filters = dict(filters or {})
        unknown = set(filters) - set(FILTER_KEYS)
        if unknown:
            raise ValueError(f"unknown filter {sorted(unknown)}; known filters: {', '.join(FILTER_KEYS)}")
        vector = np.asarray(vector, dtype=np.float32)
        depth = max(4 * k, 20)

        # 1. Rankings: ids (and cosine similarities) only; the texts are read for the winners.
        vector_sims: dict[str, float] = {}
        if mode in ("hybrid", "vector"):
            where = self._where(filters)
            if where is not None:
                hits = self.store.query(vector, k=depth, where=where or None, with_data=bool(filters.get("source")))
                vector_sims = {h.id: float(h.similarity or 0.0) for h in hits if _keep(h, filters)}
        lexical_ranks: dict[str, int] = {}
        if mode in ("hybrid", "lexical") and query_text:
            hits_lex = self.lexical.search(query_text, k=depth, filters=filters)
            lexical_ranks = {hit.chunk_id: hit.rank for hit in hits_lex}
        order = _fuse(list(vector_sims), lexical_ranks, mode)
        # One version per source while it is re-ingested: only chunks the committed manifest names.
        order = self.lexical.committed(order)

        # 2. Walk the order a page at a time: threshold, deduplication, k passages.
        identifiers = identifiers_of(query_text) if lexical_ranks else set()
        passages: list[Passage] = []
        seen: set[str] = set()
        for start in range(0, len(order), 2 * k):
            page = [
                cid for cid in order[start : start + 2 * k]
                if cid in lexical_ranks or vector_sims.get(cid, 0.0) >= threshold  # skip reads that cannot pass
            ]
            need_vectors = any(cid not in vector_sims for cid in page)
            for chunk in self.store.get(page, with_embeddings=need_vectors):
                similarity = vector_sims.get(chunk.id)
                if similarity is None:
                    similarity = float(np.dot(vector, chunk.embedding)) if chunk.embedding is not None else 0.0
                if similarity < threshold and not (chunk.id in lexical_ranks and _mentions(chunk, identifiers)):
                    continue
                key = _dedupe_key(chunk)
                if key in seen:
                    continue
                seen.add(key)
                passages.append(_passage(chunk, similarity, lexical_ranks.get(chunk.id)))
                if len(passages) == k:
                    return passages
        return passages

    def _where(self, filters: Mapping[str, Any]) -> dict[str, Any] | None:
        """A Chroma ``where`` for ``filters``; ``{}`` for none, ``None`` when nothing can match."""
        clauses: list[dict[str, Any]] = []
        kind = filters.get("kind")
        if kind is not None:
            clauses.append({"kind": {"$in": [kind] if isinstance(kind, str) else list(kind)}})
        origin = filters.get("origin")
        if origin is not None:
            clauses.append({"origin": {"$in": [origin] if isinstance(origin, str) else list(origin)}})
        prefix = filters.get("source")
        if prefix:
            if self._origins is None:
                raise ValueError("the source filter needs the list of sources (open the retriever through KnowledgeBase)")
            head = prefix.split("#", 1)[0]
            origins = sorted(o for o in self._origins() if o.startswith(head))
            if not origins:
                return None
            clauses.append({"origin": {"$in": origins}})
        if not clauses:
            return {}
        return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def identifiers_of(text: str | None) -> set[str]:
    """Words of ``text`` that look like codes: three or more characters, at least one digit."""
    return {w.casefold() for w in _CODE.findall(text or "") if len(w) >= 3 and any(ch.isdigit() for ch in w)}


def _mentions(chunk: StoredChunk, identifiers: set[str]) -> bool:
    if not identifiers:
        return False
    words = {w.casefold() for w in _CODE.findall(f"{chunk.field('title')} {chunk.field('section')} {chunk.text}")}
    return not identifiers.isdisjoint(words)


def _keep(chunk: StoredChunk, filters: Mapping[str, Any]) -> bool:
    prefix = filters.get("source")
    return not prefix or chunk.field("source").startswith(prefix) or chunk.field("origin").startswith(prefix)


def _fuse(vector_ids: Sequence[str], lexical_ranks: Mapping[str, int], mode: str) -> list[str]:
    """Chunk ids in the mode's order (reciprocal rank fusion for hybrid)."""
    if mode == "vector":
        return list(vector_ids)
    if mode == "lexical":
        return sorted(lexical_ranks, key=lexical_ranks.__getitem__)
    fused: dict[str, float] = {}
    for rank, cid in enumerate(vector_ids, start=1):
        fused[cid] = fused.get(cid, 0.0) + 1.0 / (RRF_K + rank)
    for cid, rank in lexical_ranks.items():
        fused[cid] = fused.get(cid, 0.0) + 1.0 / (RRF_K + rank)
    vector_rank = {cid: i for i, cid in enumerate(vector_ids)}
    return sorted(fused, key=lambda cid: (-fused[cid], vector_rank.get(cid, len(vector_rank))))


def _dedupe_key(chunk: StoredChunk) -> str:
    """FAQ pairs dedupe by question; any chunk also dedupes by identical text."""
    if chunk.field("kind") == "faq":
        question = str(chunk.extra.get("question") or chunk.field("title")).strip().casefold()
        return "faq:" + " ".join(question.split())
    return "text:" + hashlib.sha1(" ".join(chunk.text.split()).encode("utf-8")).hexdigest()


def _passage(chunk: StoredChunk, similarity: float, lexical_rank: int | None) -> Passage:
    metadata = dict(chunk.extra)
    metadata.setdefault("origin", chunk.field("origin"))
    metadata.setdefault("ordinal", chunk.metadata.get("ordinal"))
    kind = "faq" if chunk.field("kind") == "faq" else "article"
    return Passage(
        chunk_id=chunk.id,
        source=chunk.field("source"),
        title=chunk.field("title"),
        section=chunk.field("section"),
        text=chunk.text,
        score=similarity,
        kind=kind,
        url=chunk.field("url") or None,
        vector_score=similarity,
        lexical_rank=lexical_rank,
        metadata=metadata,
    )
