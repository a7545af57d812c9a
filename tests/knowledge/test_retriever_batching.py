"""Concurrent retrievals share their query embedding and Chroma query (one batch), and
each caller still gets exactly its own passages; a failure reaches every caller of the batch."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from fixtures_index import CORPUS, RecordingEmbedder, corpus_kb, embedder, retriever_of  # noqa: F401

from knowledge.embeddings import SentenceTransformerEmbedder
from knowledge.index import KnowledgeBase

# (query, retrieve keyword arguments): every mode, filters, a question with no answer.
CASES: list[tuple[str, dict[str, Any]]] = [
    ("how do I descale my espresso machine", {}),
    ("the grinder is jammed", {"mode": "vector"}),
    ("what does error E42 mean", {"mode": "lexical"}),
    ("how long does shipping take", {"filters": {"source": "shop/"}}),
    ("can I pay with a credit card", {"filters": {"kind": "article"}, "k": 2}),
    ("I forgot my password", {"threshold": 0.0}),
    ("what is the capital of France", {}),
    ("how do I return an item", {"mode": "hybrid", "k": 1}),
    ("descaling", {"filters": {"source": "nothing-here/"}}),
    ("water tank", {"passage_threshold": 0.0}),
    # Several sentences: found whole; found only by its last sentence (knowledge.query_sentences).
    ("Hi there. My machine shows E17 every morning. What should I do?", {}),
    ("Last summer we drove across Portugal with our three children. We visited eleven towns and ate far too much "
     "ice cream on the beach. The kids still talk about the dolphins. Can I send back something I never used?", {}),
]


class GatedEmbedder(RecordingEmbedder):
    """Embeds queries with ``inner``; the first batch waits for ``release`` (so the others
    queue behind it), and batch number ``fail_batch`` raises."""

    def __init__(self, inner: SentenceTransformerEmbedder, fail_batch: int | None = None) -> None:
        super().__init__(inner)
        self.started, self.release = threading.Event(), threading.Event()
        self.fail_batch = fail_batch

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        self.batches.append(list(texts))
        if len(self.batches) == 1:
            self.started.set()
            assert self.release.wait(10), "the test never released the first batch"
        if self.fail_batch == len(self.batches):
            raise MemoryError("the embedding model ran out of memory")
        return self.inner.embed_queries(texts)


kb = corpus_kb  # the module's knowledge base (a fixture of fixtures_index)
retriever = retriever_of


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the retrievals to queue"
        time.sleep(0.002)


def summary(passages: list) -> list[tuple[str, float]]:
    return [(p.chunk_id, round(p.score, 4)) for p in passages]


def test_concurrent_retrievals_share_one_batch_and_each_gets_its_own_passages(kb: KnowledgeBase) -> None:
    alone = retriever(kb, kb.embedder, search_workers=0)  # one at a time, nothing in the background
    expected = [summary(alone.retrieve(q, **kw)) for q, kw in CASES]
    assert any(expected) and not all(expected)  # some answer, some do not
    gated = GatedEmbedder(kb.embedder)  # type: ignore[arg-type]
    batched = retriever(kb, gated)
    with ThreadPoolExecutor(max_workers=len(CASES) + 1) as pool:
        leader = pool.submit(batched.retrieve, "how do I reset my password")
        assert gated.started.wait(10)
        futures = [pool.submit(batched.retrieve, q, **kw) for q, kw in CASES]
        wait_until(lambda: batched._vectors.pending == len(CASES))
        gated.release.set()
        got = [summary(f.result(timeout=30)) for f in futures]
        assert leader.result(timeout=30)
    assert got == expected
    retried = [sentences for batch in gated.batches[2:] for sentences in batch]
    assert len(gated.batches[1]) == len(CASES)  # one embedding call for all the messages
    assert retried and all(any(s in q for q, _ in CASES) for s in retried)  # then the sentences of one that found nothing


def test_an_embedding_failure_reaches_every_retrieval_of_the_batch_and_the_next_one_works(kb: KnowledgeBase) -> None:
    gated = GatedEmbedder(kb.embedder, fail_batch=2)  # type: ignore[arg-type]
    batched = retriever(kb, gated)
    queries = [q for q, _ in CASES[:6]]
    with ThreadPoolExecutor(max_workers=8) as pool:
        leader = pool.submit(batched.retrieve, "how do I reset my password")
        assert gated.started.wait(10)
        futures = [pool.submit(batched.retrieve, q) for q in queries]
        wait_until(lambda: batched._vectors.pending == len(queries))
        gated.release.set()
        assert leader.result(timeout=30)
        for future in futures:
            with pytest.raises(MemoryError, match="ran out of memory"):
                future.result(timeout=30)
    assert summary(batched.retrieve(queries[0])) == summary(retriever(kb, kb.embedder).retrieve(queries[0]))


def test_many_threads_at_once_match_sequential_retrieval(kb: KnowledgeBase) -> None:
    sequential = retriever(kb, kb.embedder, search_workers=0)
    expected = {q: summary(sequential.retrieve(q, **kw)) for q, kw in CASES}
    concurrent = retriever(kb, kb.embedder)
    start = threading.Barrier(len(CASES) * 2)

    def one(case: tuple[str, dict[str, Any]]) -> tuple[str, list[tuple[str, float]]]:
        start.wait(10)
        return case[0], summary(concurrent.retrieve(case[0], **case[1]))

    with ThreadPoolExecutor(max_workers=len(CASES) * 2) as pool:
        for query, got in pool.map(one, CASES * 2):
            assert got == expected[query], query


def test_concurrent_searches_share_their_committed_chunk_reads(
    kb: KnowledgeBase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Searches that check their candidates against the lexical index while another search's
    check runs share the next read (a burst of small reads otherwise queues for the GIL),
    and each still gets its own passages."""
    queries = [q for q, _ in CASES[:6]]
    expected = {q: summary(retriever(kb, kb.embedder, search_workers=0).retrieve(q)) for q in queries}
    calls: list[int] = []
    started, release = threading.Event(), threading.Event()
    committed = kb.lexical.committed

    def gated(ids: Sequence[str]) -> list[str]:
        calls.append(len(ids))
        if len(calls) == 1:  # the first read waits until the other searches have queued
            started.set()
            assert release.wait(10), "the test never released the first read"
        return committed(ids)

    monkeypatch.setattr(kb.lexical, "committed", gated)
    shared = retriever(kb, kb.embedder)
    with ThreadPoolExecutor(max_workers=len(queries) + 1) as pool:
        leader = pool.submit(shared.retrieve, "how do I reset my password")
        assert started.wait(10)
        futures = {q: pool.submit(shared.retrieve, q) for q in queries}
        wait_until(lambda: shared._committed.pending == len(queries))
        release.set()
        assert leader.result(timeout=30)
        got = {q: summary(f.result(timeout=30)) for q, f in futures.items()}
    assert got == expected
    assert len(calls) == 2  # the leader's read, then one for the searches queued behind it
