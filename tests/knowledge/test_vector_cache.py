"""The query-vector cache: a question asked again skips the embedding model and gets the
same passages; the cache is bounded, can be turned off, and never caches a failed call."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from fixtures_index import RecordingEmbedder, corpus_kb, embedder, retriever_of  # noqa: F401

from knowledge import observe
from knowledge.embeddings import Embedder
from knowledge.index import KnowledgeBase
from knowledge.retriever import Retriever
from knowledge.settings import KnowledgeSettings
from knowledge.vector_cache import VectorCache


def fake_embed(calls: list[list[str]]) -> Any:
    def embed(texts: Sequence[str]) -> np.ndarray:
        calls.append(list(texts))
        return np.array([[float(len(t)), float(sum(map(ord, t)) % 97)] for t in texts], dtype=np.float32)

    return embed


# -- the cache on its own ------------------------------------------------------------------

def test_only_texts_not_seen_are_embedded_each_once_and_rows_keep_their_order() -> None:
    cache, calls = VectorCache(8), []
    first = cache.vectors(["a", "bb", "a"], fake_embed(calls))
    second = cache.vectors(["ccc", "bb", "a"], fake_embed(calls))
    assert calls == [["a", "bb"], ["ccc"]]
    assert first[0].tolist() == first[2].tolist() == second[2].tolist()
    assert second[1].tolist() == first[1].tolist() and second[0].tolist() == [3.0, float(3 * 99 % 97)]
    assert (cache.hits, cache.misses) == (3, 3)


def test_the_least_recently_used_text_is_dropped_first() -> None:
    cache, calls = VectorCache(2), []
    cache.vectors(["a"], fake_embed(calls))
    cache.vectors(["b"], fake_embed(calls))
    cache.vectors(["a"], fake_embed(calls))  # a is now the most recent
    cache.vectors(["c"], fake_embed(calls))  # drops b
    calls.clear()
    cache.vectors(["a", "b", "c"], fake_embed(calls))
    assert calls == [["b"]] and len(cache) == 2


def test_size_zero_keeps_nothing() -> None:
    cache, calls = VectorCache(0), []
    cache.vectors(["a", "a"], fake_embed(calls))
    cache.vectors(["a"], fake_embed(calls))
    assert calls == [["a"], ["a"]] and len(cache) == 0


def test_a_wrong_number_of_rows_raises_and_caches_nothing() -> None:
    cache = VectorCache(8)
    with pytest.raises(RuntimeError, match="returned 1 vectors for 2 texts"):
        cache.vectors(["a", "b"], lambda texts: np.zeros((1, 2), dtype=np.float32))
    with pytest.raises(MemoryError):
        cache.vectors(["a"], lambda texts: (_ for _ in ()).throw(MemoryError("out of memory")))
    assert len(cache) == 0


def test_returned_rows_are_copies_and_cached_rows_read_only() -> None:
    cache = VectorCache(8)
    rows = cache.vectors(["a"], fake_embed([]))
    rows[0, 0] = 99.0
    assert cache.vectors(["a"], fake_embed([]))[0, 0] == 1.0
    with pytest.raises(ValueError):
        cache._vectors["a"][0] = 5.0


def test_a_negative_size_is_refused() -> None:
    with pytest.raises(ValueError, match="0 or more"):
        VectorCache(-1)
    with pytest.raises(ValueError):
        KnowledgeSettings(query_cache_size=-1)


# -- in the retriever ----------------------------------------------------------------------

kb = corpus_kb  # the module's knowledge base (a fixture of fixtures_index)


def retriever(kb: KnowledgeBase, using: Embedder, **settings: Any) -> Retriever:
    return retriever_of(kb, using, settings=settings)


def summary(passages: list) -> list[tuple[str, float]]:
    return [(p.chunk_id, round(p.score, 5)) for p in passages]


QUESTIONS = ("how do I descale my espresso machine", "what does error E42 mean", "what is the capital of France")


def test_a_question_asked_again_is_not_embedded_again_and_gets_the_same_passages(kb: KnowledgeBase) -> None:
    counting = RecordingEmbedder(kb.embedder)  # type: ignore[arg-type]
    cached = retriever(kb, counting)
    first = [summary(cached.retrieve(q)) for q in QUESTIONS]
    embedded = sum(len(batch) for batch in counting.batches)
    again = [summary(cached.retrieve(q)) for q in QUESTIONS]
    assert again == first and any(first)
    assert sum(len(batch) for batch in counting.batches) == embedded  # nothing embedded the second time
    assert cached.query_cache.hits == len(QUESTIONS)
    uncached = retriever(kb, kb.embedder, query_cache_size=0)
    assert [summary(uncached.retrieve(q)) for q in QUESTIONS] == first  # the cache changes no answer


def test_each_batch_reports_where_its_vectors_came_from(kb: KnowledgeBase) -> None:
    events: list[dict[str, Any]] = []

    def listener(event: str, **fields: Any) -> None:
        if event == "query_vectors":
            events.append(fields)

    cached = retriever(kb, kb.embedder)
    observe.add_listener(listener)
    try:
        cached.retrieve(QUESTIONS[0])
        cached.retrieve(QUESTIONS[0])
    finally:
        observe.remove_listener(listener)
    assert events == [{"cache": 0, "model": 1}, {"cache": 1, "model": 0}]


def test_with_the_cache_off_every_retrieval_embeds(kb: KnowledgeBase) -> None:
    counting = RecordingEmbedder(kb.embedder)  # type: ignore[arg-type]
    uncached = retriever(kb, counting, query_cache_size=0)
    uncached.retrieve(QUESTIONS[0])
    uncached.retrieve(QUESTIONS[0])
    assert [QUESTIONS[0]] in counting.batches and counting.batches.count([QUESTIONS[0]]) == 2
    assert len(uncached.query_cache) == 0


def test_the_key_is_the_text_embedded_so_context_makes_another_entry(kb: KnowledgeBase) -> None:
    counting = RecordingEmbedder(kb.embedder)  # type: ignore[arg-type]
    cached = retriever(kb, counting)
    cached.retrieve("and how long does it take?")
    cached.retrieve("how do I descale my espresso machine and how long does it take?",
                    message="and how long does it take?")
    assert ["how do I descale my espresso machine and how long does it take?"] in counting.batches
    assert len(cached.query_cache) >= 2


def test_the_sentence_fallback_reuses_cached_sentences(kb: KnowledgeBase) -> None:
    message = ("Last summer we drove across Portugal with our three children. We visited eleven towns and ate far "
               "too much ice cream on the beach. The kids still talk about the dolphins. Can I send back something I "
               "never used?")
    counting = RecordingEmbedder(kb.embedder)  # type: ignore[arg-type]
    cached = retriever(kb, counting)
    first = summary(cached.retrieve(message))
    assert len(counting.batches) == 2  # the whole message, then its sentences (it finds nothing whole)
    assert summary(cached.retrieve(message)) == first
    assert len(counting.batches) == 2
