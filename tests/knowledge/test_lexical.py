"""The lexical index's reads: their own connections, the last committed state, no waiting on writers."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

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
