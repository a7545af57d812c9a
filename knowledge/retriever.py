"""Retrieval: a query → ranked :class:`~knowledge.types.Passage` objects.

Modes:

``vector``   nearest chunks in the Chroma collection (cosine similarity).
``lexical``  BM25 over the SQLite FTS5 index (exact words: product names, error codes).
``hybrid``   both lists fused, the default when ``knowledge.hybrid`` is on. By
             ``knowledge.fusion``: ``rrf`` (the default) is reciprocal rank fusion,
             ``Σ 1 / (60 + rank)`` (Cormack et al. 2009); ``relative`` (Weaviate's
             relativeScoreFusion) scales each list's scores to 0–1 between its own worst
             and best candidate and sums them, the vector list weighted
             ``knowledge.vector_weight`` (0.75) and the lexical list the rest, so it keeps
             how far apart the candidates are (under RRF, a passage that merely shares a
             word or two with a paraphrased question ranks as high on the lexical side as
             an exact match). On the example help centre ``relative`` finds the right
             source more often and ``rrf`` the right passage within it (see the setting's
             description and ``benchmarks/bench_quality.py``).

Whatever the mode, :attr:`Passage.score` is the chunk's cosine similarity to the query
(computed from the stored vector for chunks that only the lexical search found). The order
is the mode's own (the fused order for hybrid).

A query of several sentences that finds nothing relevant as a whole (its best passage
under ``knowledge.score_threshold``) is tried again sentence by sentence
(``knowledge.query_sentences``, see :func:`knowledge.query.query_sentences`): a message
that bundles a situation and a question is embedded as their average, which can miss what
its question alone finds. A chunk's similarity is then its best one to the whole query or
any of its sentences, and the vector ranking is by that; the lexical search keeps the whole
query. A query that finds something as a whole is never changed by its sentences.

Relevance is decided in two steps, the same in every mode:

1. *Is the question answerable at all?* Only when its best candidate passage reaches
   ``knowledge.score_threshold`` (cosine similarity, calibrated on generic help-centre text
   by ``benchmarks/calibrate_threshold.py``). Otherwise retrieval returns nothing, so
   "nothing relevant" is an empty list.
2. *Which passages come with the best one?* Those that reach
   ``knowledge.passage_threshold`` (lower: 0.25 by default, the similarity that 9 in 10
   unrelated calibration questions do not reach with any passage). An answer worded
   differently from the question scores lower than the best match without being less
   relevant, so the passages ranked with an answerable question's best one are held to the
   noise level, not to the answerability bar. They come after the passages that reach
   ``score_threshold`` (each group in the mode's order), so the first passages are exactly
   those of a plain per-passage threshold and the others only fill the remaining places;
   ``passage_threshold = score_threshold`` is the plain per-passage threshold.

One exception to both: a lexical hit that contains, as a word, an *identifier* of the query
(a word of three or more characters with a digit in it: an error code, a SKU, a version
such as ``E42``, ``74937-H``, ``2.4.1``) is kept under the floor. Sentence embeddings
cannot represent such codes (a bare part number scores about 0.1–0.3 against its own
spare-part page), and an exact match on one is strong evidence.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from knowledge.batching import Batcher
from knowledge.embeddings import Embedder
from knowledge.lexical import LexicalHit, LexicalIndex
from knowledge.observe import emit
from knowledge.query import query_sentences
from knowledge.settings import KnowledgeSettings
from knowledge.spelling import Speller, wordpiece_words
from knowledge.store import StoredChunk, VectorQuery, VectorStore
from knowledge.types import Passage
from knowledge.vector_cache import VectorCache

Mode = Literal["hybrid", "vector", "lexical"]
MODES: tuple[str, ...] = ("hybrid", "vector", "lexical")
RRF_K = 60
# BM25 queries in flight at once, each beside its request's query embedding and Chroma query.
SEARCH_WORKERS = 16
FILTER_KEYS = ("source", "kind", "origin")
# A code-like word: starts and ends with a letter or digit, may hold . - / _ inside.
_CODE = re.compile(r"[^\W_](?:[\w./-]*[^\W_])?")


class Retriever:
    """Searches one knowledge base. Thread-safe; build it with :class:`knowledge.index.KnowledgeBase`.

    A search sends its BM25 query to one of ``search_workers`` worker threads, started on
    first use, while the calling thread embeds the query and runs the Chroma query (0: all
    in the calling thread, one after the other). Concurrent searches embed their queries in
    one batch and send the vectors to Chroma in one query, and check their candidates
    against the committed lexical index with shared reads (:mod:`knowledge.batching`).
    """

    def __init__(
        self,
        *,
        store: VectorStore,
        lexical: LexicalIndex,
        embedder: Embedder,
        settings: KnowledgeSettings,
        origins: Callable[[], Iterable[str]] | None = None,
        search_workers: int = SEARCH_WORKERS,
    ) -> None:
        self.store = store
        self.lexical = lexical
        self.embedder = embedder
        self.settings = settings
        self._origins = origins
        self._known_words: Callable[[str], bool] | None = None  # the embedding model's whole words
        self.search_workers = search_workers
        self._executor: ThreadPoolExecutor | None = None  # started on the first hybrid search
        self._executor_lock = threading.Lock()
        self.query_cache = VectorCache(settings.query_cache_size)
        """Recent query vectors by text (``knowledge.query_cache_size``; see :mod:`knowledge.vector_cache`)."""
        self._vectors: Batcher[_VectorJob, tuple[np.ndarray, list[StoredChunk]]] = Batcher(self._embed_and_search)
        self._committed: Batcher[tuple[str, ...], list[str]] = Batcher(self._committed_batch)

    def retrieve(
        self,
        query: str,
        *,
        k: int | None = None,
        filters: Mapping[str, Any] | None = None,
        mode: Mode | None = None,
        threshold: float | None = None,
        passage_threshold: float | None = None,
        message: str | None = None,
    ) -> list[Passage]:
        """The best passages for ``query``, at most ``k`` (default ``knowledge.top_k``).

        ``filters``: ``{"source": "billing/"}`` keeps sources whose name starts with the
        prefix, ``{"kind": "faq"}`` (or a list) keeps that kind, ``{"origin": name}`` one file.
        ``threshold`` overrides ``knowledge.score_threshold`` (the cosine similarity the best
        passage must reach for anything to be returned) and ``passage_threshold`` overrides
        ``knowledge.passage_threshold`` (the similarity the passages returned with it must
        reach); see the module docstring.

        ``message``: when ``query`` is the user's message with earlier messages prepended as
        context (:func:`knowledge.query.contextualize`), the message itself. Only its own
        sentences are then embedded one by one (``knowledge.query_sentences``), so a
        sentence of an earlier, already answered message does not pull its passages up.
        """
        if not query.strip():
            return []
        started, found = time.perf_counter(), None  # observed: knowledge.observe "retrieve"
        try:
            own = message if message is not None and message.strip() != query.strip() else None
            query = self.correct_spelling(query)
            plan = self._plan(query, k=k, filters=filters, mode=mode, split=True, message=own)
            found = self._search(None, plan, threshold, passage_threshold)
            return found
        finally:
            emit("retrieve", seconds=time.perf_counter() - started, passages=len(found or ()), ok=found is not None)

    def correct_spelling(self, query: str) -> str:
        """``query`` with likely typos replaced by knowledge-base words one edit away (see
        :mod:`knowledge.spelling`); unchanged when ``knowledge.spelling_correction`` is off."""
        if not self.settings.spelling_correction:
            return query
        if self._known_words is None:
            model = getattr(self.embedder, "model", None)
            self._known_words = wordpiece_words(getattr(model, "tokenizer", None))
        return Speller(self.lexical.vocabulary(), known=self._known_words).correct(query)

    def retrieve_by_vector(
        self,
        vector: np.ndarray,
        *,
        query_text: str | None = None,
        k: int | None = None,
        filters: Mapping[str, Any] | None = None,
        mode: Mode | None = None,
        threshold: float | None = None,
        passage_threshold: float | None = None,
    ) -> list[Passage]:
        """Like :meth:`retrieve` with a precomputed query vector (unit norm).

        Hybrid and lexical modes need ``query_text``; without it the search is vector-only.
        """
        plan = self._plan(query_text, k=k, filters=filters, mode=mode)
        return self._search(np.asarray(vector, dtype=np.float32), plan, threshold, passage_threshold)

    def _plan(
        self, query_text: str | None, *, k: int | None, filters: Mapping[str, Any] | None, mode: Mode | None,
        split: bool = False, message: str | None = None,
    ) -> _Plan:
        """The validated arguments of one search. ``split``: a query that finds nothing may be
        tried sentence by sentence (those of ``message``, else of ``query_text``)."""
        mode = mode or ("hybrid" if self.settings.hybrid else "vector")
        if mode not in MODES:
            raise ValueError(f"unknown retrieval mode {mode!r}; known modes: {', '.join(MODES)}")
        if query_text is None:
            mode = "vector"
        filters = dict(filters or {})
        unknown = set(filters) - set(FILTER_KEYS)
        if unknown:
            raise ValueError(f"unknown filter {sorted(unknown)}; known filters: {', '.join(FILTER_KEYS)}")
        k = k or self.settings.top_k
        where = (self._where(filters) if filters else {}) if mode in ("hybrid", "vector") else None
        split = split and bool(query_text) and mode != "lexical" and self.settings.query_sentences
        return _Plan(query_text=query_text, k=k, depth=max(4 * k, 20), mode=mode, filters=filters, where=where,
                     lexical=mode in ("hybrid", "lexical") and bool(query_text), split=split, message=message)

    def _embed_and_search(self, jobs: Sequence[_VectorJob]) -> list[tuple[np.ndarray, list[StoredChunk]]]:
        """Embed the jobs' texts in one call and run their Chroma queries in one query. Each
        job gets its vectors (one row per text) and its hits: each chunk once, with its best
        similarity to any of the job's texts."""
        texts = [text for job in jobs for text in job.texts]
        embedded = 0

        def embed(missing: Sequence[str]) -> np.ndarray:  # the texts not seen lately, in one call
            nonlocal embedded
            embedded = len(missing)
            return self.embedder.embed_queries(missing)

        vectors = self.query_cache.vectors(texts, embed)
        emit("query_vectors", cache=len(texts) - embedded, model=embedded)
        bounds = np.cumsum([0, *(len(job.texts) for job in jobs)])
        rows = [vectors[start:end] for start, end in zip(bounds[:-1], bounds[1:])]
        searches = [(i, replace(job.search, vector=row)) for i, job in enumerate(jobs) if job.search is not None
                    for row in rows[i]]
        found = self.store.query_many([search for _, search in searches])
        hits: dict[int, list[list[StoredChunk]]] = {}
        for (i, _), chunks in zip(searches, found):
            hits.setdefault(i, []).append(chunks)
        return [(rows[i], _best_of(hits.get(i, []), job.search.k if job.search else 0)) for i, job in enumerate(jobs)]

    def _search(
        self, vector: np.ndarray | None, plan: _Plan, threshold: float | None, passage_threshold: float | None
    ) -> list[Passage]:
        """Rank, floor and read the passages of ``plan`` (embedding ``plan.query_text`` when
        ``vector`` is None)."""
        k, mode, filters = plan.k, plan.mode, plan.filters
        threshold = self.settings.score_threshold if threshold is None else threshold
        if passage_threshold is None:
            passage_threshold = self.settings.passage_threshold
        search = None
        if plan.where is not None:
            search = VectorQuery(_NO_VECTOR, k=plan.depth, where=plan.where or None, with_data=bool(filters.get("source")))

        # 1. Rankings: ids (and cosine similarities) only; the texts are read for the winners.
        #    Two queries overlap, one on a worker thread: with a query to embed, the BM25
        #    query runs there while this thread embeds the query and runs the Chroma query,
        #    both batched with concurrent searches' (knowledge.batching). With the vector
        #    given, the Chroma query runs there and BM25 here: SQLite releases the GIL for
        #    the whole search, Chroma only for parts of it, so the other way round the
        #    worker waits for the GIL (at 100k chunks, about 2.4 ms instead of 3.7).
        lexical: Future[list[LexicalHit]] | list[LexicalHit] = []
        vector_hits: Future[list[StoredChunk]] | list[StoredChunk] = []
        try:
            if vector is None:
                if plan.lexical:
                    lexical = self._call(self.lexical.search, plan.query_text, k=plan.depth, filters=filters,
                                         background=True)
                assert plan.query_text is not None
                vector, vector_hits = self._vectors.call(_VectorJob((plan.query_text,), search))
            else:
                if search is not None:
                    vector_hits = self._call(self.store.query, vector, k=search.k, where=search.where,
                                             with_data=search.with_data, background=plan.lexical)
                if plan.lexical:
                    lexical = self.lexical.search(plan.query_text or "", k=plan.depth, filters=filters)
        except BaseException:
            wait([f for f in (lexical, vector_hits) if isinstance(f, Future)])  # never left running
            raise
        hits = vector_hits.result() if isinstance(vector_hits, Future) else vector_hits
        lexical_hits = lexical.result() if isinstance(lexical, Future) else lexical
        lexical_ranks = {hit.chunk_id: hit.rank for hit in lexical_hits}
        query_text = plan.query_text
        vector_sims, order = self._rank(hits, lexical_hits, mode, filters)

        # 2. The relevance floor: the question is answerable when its best passage reaches the
        #    threshold; the passages ranked with it then need only reach the passage threshold.
        identifiers = identifiers_of(query_text) if lexical_ranks else set()
        read_ahead: dict[str, StoredChunk] = {}  # lexical mode: every candidate, read once for its vector
        if mode == "lexical" and order:  # no vector search: the similarities come from the stored vectors
            read_ahead = {chunk.id: chunk for chunk in self._read(order, {})}
            vector_sims = {cid: _similarity(vector, chunk) for cid, chunk in read_ahead.items()}
        best = max((vector_sims[cid] for cid in order if cid in vector_sims), default=0.0)
        if best < threshold and plan.split and search is not None and (sentences := self._sentences(plan)):
            # Nothing relevant to the whole message: its sentences, each on its own, may be
            # (knowledge.query_sentences). Chunks are then ranked by their best similarity.
            rows, more = self._vectors.call(_VectorJob(sentences, search))
            vector = np.vstack([vector, rows])
            vector_sims, order = self._rank(_best_of([hits, more], search.k), lexical_hits, mode, filters)
            best = max((vector_sims[cid] for cid in order if cid in vector_sims), default=0.0)
        floor = relevance_floor(best, threshold, passage_threshold)

        # 3. Walk the order a page at a time: floor, deduplication, k passages. Passages that
        #    reach the threshold (or quote an identifier) keep the mode's order; those that only
        #    reach the passage threshold come after them, so they never push a confident one down.
        passages: list[Passage] = []
        companions: list[Passage] = []
        seen: set[str] = set()
        position = 0
        while position < len(order) and len(passages) < k:
            page, position = _page(order, position, k - len(passages), vector_sims, lexical_ranks, threshold, floor)
            chunks = [read_ahead[cid] for cid in page if cid in read_ahead] if read_ahead else self._read(page, vector_sims)
            for chunk in chunks:
                similarity = vector_sims.get(chunk.id)
                if similarity is None:
                    similarity = _similarity(vector, chunk)
                confident = similarity >= threshold or (chunk.id in lexical_ranks and _mentions(chunk, identifiers))
                if not confident and similarity < floor:
                    continue
                key = _dedupe_key(chunk)
                if key in seen:
                    continue
                seen.add(key)
                passage = _passage(chunk, similarity, lexical_ranks.get(chunk.id))
                (passages if confident else companions).append(passage)
                if len(passages) == k:
                    return passages
        return passages + companions[: k - len(passages)]

    def _sentences(self, plan: _Plan) -> tuple[str, ...]:
        """The sentences to try on their own: the user's message's (spelling corrected), else
        the query's; none for a single sentence."""
        text = plan.query_text if plan.message is None else self.correct_spelling(plan.message)
        return tuple(s for s in query_sentences(text or "") if s != plan.query_text)

    def _rank(
        self, hits: Sequence[StoredChunk], lexical_hits: Sequence[LexicalHit], mode: str, filters: Mapping[str, Any]
    ) -> tuple[dict[str, float], list[str]]:
        """The vector hits' similarities (those the filters keep) and the candidates in the
        mode's order, committed ones only."""
        vector_sims = {h.id: float(h.similarity or 0.0) for h in hits if _keep(h, filters)}
        order = _fuse(vector_sims, {hit.chunk_id: hit.score for hit in lexical_hits}, mode,
                      fusion=self.settings.fusion, vector_weight=self.settings.vector_weight)
        # One version per source while it is re-ingested: only chunks the committed manifest names,
        # checked once both rankings are in (one read, shared with concurrent searches).
        return vector_sims, (self._committed.call(tuple(order)) if order else [])

    def _committed_batch(self, orders: Sequence[tuple[str, ...]]) -> list[list[str]]:
        """Concurrent searches' candidates that the lexical index names, with one read for all
        (see :meth:`LexicalIndex.committed`): a burst of searches otherwise queues its many
        small reads for the GIL, each one's several times longer than the read itself."""
        kept = set(self.lexical.committed(list(dict.fromkeys(cid for order in orders for cid in order))))
        return [[cid for cid in order if cid in kept] for order in orders]

    def _read(self, ids: Sequence[str], vector_sims: Mapping[str, float]) -> list[StoredChunk]:
        """The chunks ``ids`` (those in the index, in order), with their stored vectors where
        ``vector_sims`` lacks their similarity.

        Texts, metadata and vectors come from the lexical index (written with the manifest,
        so the committed versions, and a primary-key lookup: reading five winners from
        Chroma took 1.3-2.7 ms at 100k chunks, and the vectors of a hybrid search's
        lexical-only hits another 2 ms). Chroma is read, batched with concurrent searches'
        reads, only for what an index built by an earlier version lacks (until the next
        ingest fills it in); a chunk Chroma does not hold is not in the index (yet).
        """
        found = self.lexical.stored(ids)
        wanted = [cid for cid in ids
                  if cid not in found or (cid not in vector_sims and found[cid].embedding is None)]
        if wanted:
            read = {c.id: c for c in self.store.get(wanted, with_embeddings=any(cid not in vector_sims for cid in wanted))}
            for cid in wanted:
                if cid in read:
                    found[cid] = read[cid]
                else:
                    found.pop(cid, None)
        return [found[cid] for cid in ids if cid in found]

    def _call(self, fn: Callable[..., Any], *args: Any, background: bool, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)``, or a future of it on the retriever's worker threads when ``background``."""
        if background and self.search_workers > 0:
            pool = self._executor
            if pool is None:
                with self._executor_lock:
                    if self._executor is None:
                        self._executor = ThreadPoolExecutor(max_workers=self.search_workers, thread_name_prefix="botkit-search")
                    pool = self._executor
            try:
                return pool.submit(fn, *args, **kwargs)
            except RuntimeError:  # the interpreter is shutting down: call it here
                pass
        return fn(*args, **kwargs)

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


@dataclass(frozen=True)
class _Plan:
    """One search's validated arguments. ``where``: the Chroma filter (``{}`` none), or None
    for no vector search (lexical mode, or filters that nothing can match)."""

    query_text: str | None
    k: int
    depth: int
    mode: str
    filters: dict[str, Any]
    where: dict[str, Any] | None
    lexical: bool
    split: bool = False  # tried sentence by sentence when it finds nothing (knowledge.query_sentences)
    message: str | None = None  # the user's own message, when query_text adds context to it


@dataclass(frozen=True)
class _VectorJob:
    """Texts to embed (a query, or its sentences), and their Chroma query (run with each of
    their vectors) unless ``search`` is None."""

    texts: tuple[str, ...]
    search: VectorQuery | None


def _best_of(rankings: Sequence[list[StoredChunk]], k: int) -> list[StoredChunk]:
    """One ranking from several texts' rankings: each chunk once, with its best similarity,
    best first, at most ``k``."""
    if len(rankings) <= 1:
        return rankings[0] if rankings else []
    best: dict[str, StoredChunk] = {}
    for ranking in rankings:
        for chunk in ranking:
            kept = best.get(chunk.id)
            if kept is None or (chunk.similarity or 0.0) > (kept.similarity or 0.0):
                best[chunk.id] = chunk
    return sorted(best.values(), key=lambda chunk: -(chunk.similarity or 0.0))[:k]


_NO_VECTOR = np.zeros(0, dtype=np.float32)


def _page(
    order: Sequence[str], position: int, need: int, vector_sims: Mapping[str, float], lexical_ranks: Mapping[str, int],
    threshold: float, floor: float,
) -> tuple[list[str], int]:
    """The next ids to read from ``order[position:]`` and the position after them.

    Ids whose similarity is known to be under ``floor`` are skipped (unless the lexical search
    found them: they may quote an identifier). The page ends once it holds ``need`` ids known
    to reach ``threshold``: usually one read serves the whole search, lexical-only ids (whose
    similarity is known once read) included.
    """
    page: list[str] = []
    sure = 0
    while position < len(order) and sure < need:
        cid = order[position]
        position += 1
        similarity = vector_sims.get(cid)
        if similarity is not None and similarity >= threshold:
            sure += 1
        elif cid not in lexical_ranks and (similarity is None or similarity < floor):
            continue
        page.append(cid)
    return page, position


def relevance_floor(best: float, threshold: float, passage_threshold: float) -> float:
    """The lowest cosine similarity a passage may have, given the best candidate's ``best``.

    Under ``threshold`` the question is not answerable: the floor is the threshold, which
    nothing but a passage quoting one of the question's identifiers gets past. At or above
    it, the floor is ``passage_threshold``, never above ``threshold``.
    """
    return threshold if best < threshold else min(threshold, passage_threshold)


def _similarity(vector: np.ndarray, chunk: StoredChunk) -> float:
    """Cosine similarity to the query: the best over its rows when ``vector`` holds one per
    sentence (see :meth:`Retriever._embed_and_search`)."""
    return float(np.max(np.dot(vector, chunk.embedding))) if chunk.embedding is not None else 0.0


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


def _fuse(
    vector_sims: Mapping[str, float], lexical_scores: Mapping[str, float], mode: str, *,
    fusion: str = "rrf", vector_weight: float = 0.75,
) -> list[str]:
    """Chunk ids in the mode's order.

    ``vector_sims`` (cosine similarity) and ``lexical_scores`` (BM25, higher is better) are
    each in their own ranking's order, best first. Hybrid ties go to the better vector rank.
    """
    if mode == "vector":
        return list(vector_sims)
    if mode == "lexical":
        return list(lexical_scores)
    fused: dict[str, float] = {}
    if fusion == "rrf":
        for ranking in (vector_sims, lexical_scores):
            for rank, cid in enumerate(ranking, start=1):
                fused[cid] = fused.get(cid, 0.0) + 1.0 / (RRF_K + rank)
    elif fusion == "relative":
        for ranking, weight in ((vector_sims, vector_weight), (lexical_scores, 1.0 - vector_weight)):
            for cid, scaled in _scaled(ranking).items():
                fused[cid] = fused.get(cid, 0.0) + weight * scaled
    else:
        raise ValueError(f"unknown fusion {fusion!r}; known: relative, rrf")
    vector_rank = {cid: i for i, cid in enumerate(vector_sims)}
    return sorted(fused, key=lambda cid: (-fused[cid], vector_rank.get(cid, len(vector_rank))))


def _scaled(scores: Mapping[str, float]) -> dict[str, float]:
    """``scores`` scaled to 0 (the worst) – 1 (the best); all 1 when they are all equal."""
    if not scores:
        return {}
    low, high = min(scores.values()), max(scores.values())
    if high <= low:
        return dict.fromkeys(scores, 1.0)
    return {cid: (score - low) / (high - low) for cid, score in scores.items()}


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
