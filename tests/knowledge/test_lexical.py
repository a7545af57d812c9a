"""The lexical index's reads: their own connections, the last committed state, no waiting on writers."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from knowledge.lexical import LexicalIndex
from knowledge.types import Chunk


def _chunk(i: int, text: str) -> Chunk:
    return Chunk(id=f"c{i}", source="a.md", origin="a.md", title="", section="", text=text, embed_text=text, ordinal=i)


def test_search_sees_committed_state_and_does_not_wait_for_a_writer(tmp_path: Path) -> None:
    index = LexicalIndex(tmp_path / "lexical.db")
    index.replace([_chunk(1, "descaling the espresso machine")])
    writing, release = threading.Event(), threading.Event()

    def writer() -> None:
        with index.transaction() as conn:  # holds the write lock until released
            conn.execute("INSERT INTO chunk_meta (chunk_id, source, origin, kind) VALUES ('c2', 'b.md', 'b.md', 'article')")
            writing.set()
            release.wait(10)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert writing.wait(10)
        started = time.perf_counter()
        hits = index.search("descaling", k=5)
        assert [h.chunk_id for h in hits] == ["c1"]
        assert index.committed(["c1", "c2"]) == ["c1"]  # the uncommitted chunk is not visible
        assert time.perf_counter() - started < 5
    finally:
        release.set()
        thread.join()
    assert index.committed(["c1", "c2"]) == ["c1", "c2"]
    index.close()


def test_concurrent_searches_and_reopening_after_close(tmp_path: Path) -> None:
    index = LexicalIndex(tmp_path / "lexical.db")
    index.replace([_chunk(i, f"word{i} shared text") for i in range(50)])
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: index.search(f"word{i % 50}", k=3), range(200)))
    assert all(hits and hits[0].chunk_id == f"c{i % 50}" for i, hits in enumerate(results))
    index.close()
    assert index.search("word7", k=1)[0].chunk_id == "c7"  # a closed index opens again on use
    index.close()


def test_stored_gives_the_committed_chunk_as_the_vector_store_holds_it(tmp_path: Path) -> None:
    from knowledge.store import chunk_metadata

    index = LexicalIndex(tmp_path / "lexical.db")
    chunk = Chunk(id="c1", source="faq.csv#3", origin="faq.csv", title="Warranty", section="Q", text="Two years.",
                  embed_text="Two years.", ordinal=3, kind="faq", url="https://help.example/w",
                  metadata={"question": "How long is the warranty?", "page": 2})
    index.replace([chunk, _chunk(2, "other")])
    stored = index.stored(["c2", "missing", "c1"])
    assert set(stored) == {"c1", "c2"}
    assert (stored["c1"].text, stored["c1"].metadata) == ("Two years.", chunk_metadata(chunk))
    assert stored["c1"].embedding is None  # no vectors given: none kept
    index.delete(["c1"])
    assert set(index.stored(["c1", "c2"])) == {"c2"}
    assert index.stored([]) == {}


def test_vectors_are_kept_exactly_and_replaced_with_their_chunk(tmp_path: Path) -> None:
    index = LexicalIndex(tmp_path / "lexical.db")
    vectors = np.random.default_rng(0).normal(size=(2, 384)).astype(np.float32)
    index.replace([_chunk(1, "one"), _chunk(2, "two")], vectors=vectors)
    stored = index.stored(["c1", "c2"])
    assert np.array_equal(stored["c1"].embedding, vectors[0]) and np.array_equal(stored["c2"].embedding, vectors[1])
    index.replace([_chunk(1, "one, edited")], vectors=vectors[1:])
    assert np.array_equal(index.stored(["c1"])["c1"].embedding, vectors[1])
    with pytest.raises(ValueError, match="2 chunks need as many vectors"):
        index.replace([_chunk(3, "three"), _chunk(4, "four")], vectors=vectors[:1])
    assert set(index.stored(["c3", "c4"])) == set()  # nothing written


def test_optimize_keeps_every_match(tmp_path: Path) -> None:
    index = LexicalIndex(tmp_path / "lexical.db")
    for i in range(30):  # one transaction, so one FTS segment, each
        index.replace([_chunk(i, f"word{i} shared text")])
    before = [h.chunk_id for h in index.search("shared word7", k=40)]
    index.optimize()
    assert [h.chunk_id for h in index.search("shared word7", k=40)] == before
    assert len(before) == 30 and before[0] == "c7"
    index.close()


def test_an_index_from_before_payloads_gains_the_column_and_reports_its_chunks_as_not_stored(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "lexical.db"
    old = sqlite3.connect(path)  # the layout of an index built by an earlier version
    old.execute("CREATE TABLE chunk_meta (rowid INTEGER PRIMARY KEY, chunk_id TEXT NOT NULL UNIQUE, "
                "source TEXT NOT NULL, origin TEXT NOT NULL, kind TEXT NOT NULL)")
    old.execute("CREATE VIRTUAL TABLE chunk_text USING fts5(title, section, body)")
    old.execute("INSERT INTO chunk_meta (rowid, chunk_id, source, origin, kind) VALUES (1, 'old', 'a.md', 'a.md', 'article')")
    old.execute("INSERT INTO chunk_text (rowid, title, section, body) VALUES (1, '', '', 'descaling the machine')")
    old.commit()
    old.close()
    index = LexicalIndex(path)
    assert [h.chunk_id for h in index.search("descaling", k=5)] == ["old"]
    assert index.stored(["old"]) == {}  # read from the vector store instead
    index.replace([_chunk(2, "new text")], vectors=np.ones((1, 3), dtype=np.float32))
    assert set(index.stored(["old", "c2"])) == {"c2"}
    assert index.stored(["c2"])["c2"].embedding.tolist() == [1.0, 1.0, 1.0]
