"""Micro-batched query embedding: concurrent ``embed_query`` calls share one ``encode``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fixtures_index import embedder  # noqa: F401  (fixture)

from knowledge.embeddings import QueryBatcher, SentenceTransformerEmbedder

QUERIES = [
    "How do I reset my password?",
    "Can I get a refund on the annual plan?",
    "How much does Pro cost?",
    "What does error OB-4031 mean?",
    "How do I set up single sign-on with Okta for my whole team?",
    "hi",
    "Kann ich Orbitly offline auf meinem Telefon benutzen?",
    "How do I connect Slack?",
]


class GatedEmbed:
    """A fake ``embed``: records each batch; the first batch blocks until ``release`` is set."""

    def __init__(self, fail_batch: int | None = None) -> None:
        self.batches: list[list[str]] = []
        self.started = threading.Event()
        self.release = threading.Event()
        self.fail_batch = fail_batch

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        self.batches.append(list(texts))
        if len(self.batches) == 1:
            self.started.set()
            assert self.release.wait(10), "the test never released the first batch"
        if self.fail_batch == len(self.batches):
            raise RuntimeError("encode failed: out of memory")
        return np.array([[float(len(t)), float(sum(map(ord, t)))] for t in texts], dtype=np.float32)


def expected(text: str) -> np.ndarray:
    return np.array([float(len(text)), float(sum(map(ord, text)))], dtype=np.float32)


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the queries to queue"
        time.sleep(0.002)


def start_blocked_batch(batcher: QueryBatcher, fake: GatedEmbed, pool: ThreadPoolExecutor, followers: list[str]):
    """One query leads and blocks inside ``embed``; ``followers`` queue behind it."""
    leader = pool.submit(batcher.embed_query, "leader")
    assert fake.started.wait(10)
    futures = [pool.submit(batcher.embed_query, text) for text in followers]
    wait_until(lambda: batcher.pending == len(followers))
    return leader, futures


def test_an_idle_query_is_encoded_at_once_on_its_own() -> None:
    fake = GatedEmbed()
    fake.release.set()
    batcher = QueryBatcher(fake)
    assert np.array_equal(batcher.embed_query("hello"), expected("hello"))
    assert fake.batches == [["hello"]] and batcher.batches == 1 and batcher.pending == 0


def test_queries_arriving_during_a_batch_share_the_next_one() -> None:
    fake = GatedEmbed()
    batcher = QueryBatcher(fake)
    with ThreadPoolExecutor(max_workers=16) as pool:
        leader, futures = start_blocked_batch(batcher, fake, pool, QUERIES)
        fake.release.set()
        results = [f.result(timeout=10) for f in futures]
        assert np.array_equal(leader.result(timeout=10), expected("leader"))
    assert fake.batches[0] == ["leader"]
    assert len(fake.batches) == 2 and sorted(fake.batches[1]) == sorted(QUERIES)  # 8 queries, one call
    for text, vector in zip(QUERIES, results):
        assert np.array_equal(vector, expected(text))  # each caller gets its own row
    assert batcher.pending == 0


def test_batches_are_capped_at_max_batch() -> None:
    fake = GatedEmbed()
    batcher = QueryBatcher(fake, max_batch=3)
    with ThreadPoolExecutor(max_workers=16) as pool:
        _, futures = start_blocked_batch(batcher, fake, pool, QUERIES)
        fake.release.set()
        for text, future in zip(QUERIES, futures):
            assert np.array_equal(future.result(timeout=10), expected(text))
    assert [len(b) for b in fake.batches] == [1, 3, 3, 2]
    assert sorted(t for b in fake.batches[1:] for t in b) == sorted(QUERIES)


def test_an_encode_error_reaches_every_waiter_of_the_batch_and_the_next_batch_works() -> None:
    fake = GatedEmbed(fail_batch=2)
    batcher = QueryBatcher(fake)
    with ThreadPoolExecutor(max_workers=16) as pool:
        leader, futures = start_blocked_batch(batcher, fake, pool, QUERIES)
        fake.release.set()
        assert np.array_equal(leader.result(timeout=10), expected("leader"))
        for future in futures:
            with pytest.raises(RuntimeError, match="out of memory"):
                future.result(timeout=10)
    assert np.array_equal(batcher.embed_query("again"), expected("again"))
    assert batcher.pending == 0


def test_a_wrong_number_of_vectors_is_an_error_for_every_waiter() -> None:
    batcher = QueryBatcher(lambda texts: np.zeros((len(texts) + 1, 2), dtype=np.float32))
    with pytest.raises(RuntimeError, match="2 vectors for 1 texts"):
        batcher.embed_query("hello")


def test_max_batch_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_batch must be at least 1"):
        QueryBatcher(lambda texts: np.zeros((len(texts), 2)), max_batch=0)


def test_batched_query_vectors_equal_unbatched_ones(embedder: SentenceTransformerEmbedder) -> None:  # noqa: F811
    assert embedder.queries is not None  # batching is on by default
    alone = {text: embedder.embed([text])[0] for text in QUERIES}
    before = embedder.queries.batches
    start = threading.Barrier(len(QUERIES))

    def query(text: str) -> np.ndarray:
        start.wait(10)
        return embedder.embed_query(text)

    with ThreadPoolExecutor(max_workers=len(QUERIES)) as pool:
        batched = list(pool.map(query, QUERIES * 3))
    for text, vector in zip(QUERIES * 3, batched):
        assert vector.shape == (384,) and vector.dtype == np.float32
        np.testing.assert_allclose(vector, alone[text], atol=1e-5)
    assert embedder.queries.batches - before < len(QUERIES) * 3  # some calls were shared


def test_batching_can_be_turned_off(embedder: SentenceTransformerEmbedder) -> None:  # noqa: F811
    plain = SentenceTransformerEmbedder(model=embedder.model, model_id=embedder.model_id, batch_queries=False)
    assert plain.queries is None
    np.testing.assert_allclose(plain.embed_query(QUERIES[0]), embedder.embed_query(QUERIES[0]), atol=1e-5)
