"""The generic micro-batcher (:class:`knowledge.batching.Batcher`) and the vector store's
batched reads: concurrent calls share one batched call, each caller gets its own result,
and an error reaches every caller of the failed batch."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from knowledge.batching import Batcher
from knowledge.errors import IndexUnavailable
from knowledge.store import VectorQuery, VectorStore
from knowledge.types import Chunk

DIM = 8


class Gated:
    """A fake batched function: records each batch; the first one blocks until ``release``."""

    def __init__(self, fail_batch: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.started = threading.Event()
        self.release = threading.Event()
        self.fail_batch = fail_batch

    def __call__(self, items: Sequence[int]) -> list[str]:
        self.batches.append(list(items))
        if len(self.batches) == 1:
            self.started.set()
            assert self.release.wait(10), "the test never released the first batch"
        if self.fail_batch == len(self.batches):
            raise LookupError("backend gone")
        return [f"r{i}" for i in items]


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the calls to queue"
        time.sleep(0.002)


def blocked(batcher: Batcher[int, str], fake: Gated, pool: ThreadPoolExecutor, items: list[int]):
    """Item -1 leads and blocks inside the batch; ``items`` queue behind it, in this order."""
    leader = pool.submit(batcher.call, -1)
    assert fake.started.wait(10)
    futures = []
    for n, item in enumerate(items, start=1):
        futures.append(pool.submit(batcher.call, item))
        wait_until(lambda n=n: batcher.pending == n)  # queued in a known order
    return leader, futures


def test_each_caller_gets_its_own_result_and_batches_keep_arrival_order() -> None:
    fake = Gated()
    batcher: Batcher[int, str] = Batcher(fake)
    items = list(range(12))
    with ThreadPoolExecutor(max_workers=16) as pool:
        leader, futures = blocked(batcher, fake, pool, items)
        fake.release.set()
        assert leader.result(timeout=10) == "r-1"
        assert [f.result(timeout=10) for f in futures] == [f"r{i}" for i in items]
    assert fake.batches == [[-1], items] and batcher.batches == 2 and batcher.pending == 0


def test_an_error_reaches_every_caller_of_the_batch_and_the_next_batch_works() -> None:
    fake = Gated(fail_batch=2)
    batcher: Batcher[int, str] = Batcher(fake, max_batch=4)
    with ThreadPoolExecutor(max_workers=16) as pool:
        leader, futures = blocked(batcher, fake, pool, list(range(6)))
        fake.release.set()
        assert leader.result(timeout=10) == "r-1"
        for future in futures[:4]:  # the second batch failed: all four of its callers see it
            with pytest.raises(LookupError, match="backend gone"):
                future.result(timeout=10)
        assert [f.result(timeout=10) for f in futures[4:]] == ["r4", "r5"]
    assert [len(b) for b in fake.batches] == [1, 4, 2]
    assert batcher.call(7) == "r7"


def test_a_wrong_number_of_results_is_an_error_for_every_caller() -> None:
    batcher: Batcher[int, int] = Batcher(lambda items: [*items, 0])
    with pytest.raises(RuntimeError, match="returned 2 results for 1 items"):
        batcher.call(1)
    assert batcher.pending == 0


def test_many_threads_at_once_each_get_their_own_result() -> None:
    def squares(items: Sequence[int]) -> list[int]:
        time.sleep(0.002)  # long enough for others to queue meanwhile
        return [i * i for i in items]

    batcher: Batcher[int, int] = Batcher(squares, max_batch=5)
    start = threading.Barrier(32)

    def square(i: int) -> int:
        start.wait(10)
        return batcher.call(i)

    with ThreadPoolExecutor(max_workers=32) as pool:
        assert list(pool.map(square, range(32))) == [i * i for i in range(32)]
    assert batcher.pending == 0


# -- the vector store's batched query and get ----------------------------------------------

def _chunk(i: int) -> Chunk:
    kind = "faq" if i % 2 else "article"
    return Chunk(id=f"id-{i}", source=f"s{i}.md", origin=f"s{i}.md", title=f"T{i}", section="", text=f"text {i}",
                 embed_text=f"text {i}", ordinal=i, kind=kind)


@pytest.fixture
def store(tmp_path: Path) -> tuple[VectorStore, np.ndarray]:
    vectors = np.random.default_rng(3).normal(size=(20, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    opened = VectorStore.open(model_id="test-model", dimension=DIM, path=tmp_path / "chroma")
    opened.upsert([_chunk(i) for i in range(20)], vectors)
    return opened, vectors


def _same(a: list, b: list) -> bool:
    return [(c.id, c.text, c.metadata, round(c.similarity or 0, 5)) for c in a] == [
        (c.id, c.text, c.metadata, round(c.similarity or 0, 5)) for c in b]


def test_concurrent_queries_share_chroma_calls_and_match_single_queries(store, monkeypatch) -> None:
    vs, vectors = store
    cases = [(vectors[i], {"k": 3 + i % 3, "where": {"kind": "faq"} if i % 4 == 0 else None, "with_data": i % 2 == 0})
             for i in range(20)]
    alone = [vs.query_many([VectorQuery(v, **kw)])[0] for v, kw in cases]
    calls = []
    real = vs._collection.query
    gate = threading.Event()

    def counting(**kwargs):
        calls.append(len(kwargs["query_embeddings"]))
        gate.wait(10)  # the first call holds the batch open while the others queue
        return real(**kwargs)

    monkeypatch.setattr(vs._collection, "query", counting)
    with ThreadPoolExecutor(max_workers=20) as pool:
        futures = [pool.submit(vs.query, v, **kw) for v, kw in cases]
        wait_until(lambda: vs._queries.pending == 19)
        gate.set()
        results = [f.result(timeout=10) for f in futures]
    for mine, single in zip(results, alone):
        assert _same(mine, single)
    assert len(calls) < 20 and sum(calls) == 20  # grouped by (k, where, with_data)


def test_concurrent_gets_share_one_read_and_keep_each_callers_order(store, monkeypatch) -> None:
    vs, vectors = store
    requests = [[f"id-{(i * 7 + j) % 20}" for j in range(4)] + ["missing"] for i in range(10)]
    requests = [list(reversed(r)) if i % 2 else r for i, r in enumerate(requests)]
    calls = []
    real = vs._collection.get
    gate = threading.Event()

    def counting(**kwargs):
        calls.append(kwargs)
        gate.wait(10)
        return real(**kwargs)

    monkeypatch.setattr(vs._collection, "get", counting)
    with ThreadPoolExecutor(max_workers=10) as pool:
        futures = [pool.submit(vs.get, ids, with_embeddings=i == 3) for i, ids in enumerate(requests)]
        wait_until(lambda: vs._gets.pending == 9)
        gate.set()
        results = [f.result(timeout=10) for f in futures]
    for i, (ids, got) in enumerate(zip(requests, results)):
        assert [c.id for c in got] == [cid for cid in ids if cid != "missing"]
        assert all(c.text == f"text {c.id[3:]}" for c in got)
        assert all((c.embedding is not None) == (i == 3) for c in got)
    np.testing.assert_allclose(results[3][0].embedding, vectors[int(results[3][0].id[3:])], atol=1e-5)
    assert len(calls) <= 3  # the first alone, then one read per with_embeddings value


def test_a_chroma_failure_reaches_every_waiting_query(store, monkeypatch) -> None:
    vs, vectors = store
    gate = threading.Event()
    calls = []

    def broken(**kwargs):
        calls.append(1)
        gate.wait(10)
        raise ValueError("segment reader closed")

    monkeypatch.setattr(vs._collection, "query", broken)
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(vs.query, vectors[i], k=3) for i in range(8)]
        wait_until(lambda: vs._queries.pending == 7)
        gate.set()
        for future in futures:
            with pytest.raises(IndexUnavailable, match="cannot search: ValueError: segment reader closed"):
                future.result(timeout=10)
    assert len(calls) == 2
    monkeypatch.undo()
    assert vs.query(vectors[0], k=1)[0].id == "id-0"  # the next batch works
