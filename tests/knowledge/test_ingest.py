"""Incremental ingest: counts across runs, exact replacement, broken sources, crash safety."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from fixtures_index import CORPUS, CountingEmbedder, embedder, index_ids, make_bot, open_kb, write_files  # noqa: F401

from knowledge.chunking import chunk_documents
from knowledge.embeddings import SentenceTransformerEmbedder
from knowledge.errors import EmbeddingModelError, IndexUnavailable, KnowledgeConfigError
from knowledge.ingest import ingest_lock, sync
from knowledge.settings import KnowledgeSettings
from knowledge.sources import discover, parse, read
from knowledge.types import Chunk

REPO = Path(__file__).resolve().parents[2]


def chunk_ids_by_source(kb) -> dict[str, set[str]]:  # type: ignore[no-untyped-def]
    return {name: set(entry.chunk_ids) for name, entry in kb.manifest.entries().items()}


def assert_consistent(kb) -> set[str]:  # type: ignore[no-untyped-def]
    store_ids, manifest_ids, fts_ids = index_ids(kb)
    assert store_ids == manifest_ids == fts_ids
    return store_ids


def expected_chunks(bot: Path, settings: KnowledgeSettings | None = None) -> list[Chunk]:
    """What the sources chunk into right now (computed without the index)."""
    settings = settings or KnowledgeSettings()
    refs, _ = discover(settings, bot)
    chunks: list[Chunk] = []
    for ref in refs:
        chunks += chunk_documents(parse(read(ref, settings)), chunk_size=settings.chunk_size,
                                  chunk_overlap=settings.chunk_overlap)
    return chunks


def test_added_updated_removed_unchanged_across_runs(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> None:
    bot = make_bot(tmp_path)
    counting = CountingEmbedder(embedder)
    kb = open_kb(bot, counting)
    assert kb.is_empty() and kb.is_stale()

    first = kb.ingest()
    assert (first.added, first.updated, first.removed, first.unchanged, first.failed) == (len(CORPUS), 0, 0, 0, [])
    assert first.chunks == len(expected_chunks(bot)) == counting.texts
    assert not kb.is_empty() and not kb.is_stale()

    counting.texts = counting.calls = 0
    again = kb.ingest()
    assert (again.added, again.updated, again.removed, again.unchanged) == (0, 0, 0, len(CORPUS))
    assert counting.calls == 0 and again.chunks == first.chunks  # nothing embedded

    (bot / "knowledge/shop/returns.md").write_text("# Returns\n\nReturns are accepted within 60 days.\n")
    (bot / "knowledge/account/password.md").unlink()
    write_files(bot / "knowledge", {"shop/gift-wrap.md": "# Gift wrap\n\nGift wrapping costs 3 euros per parcel.\n"})
    assert kb.is_stale()
    third = kb.ingest()
    assert (third.added, third.updated, third.removed, third.unchanged) == (1, 1, 1, len(CORPUS) - 2)
    assert counting.texts == 2  # one chunk each for the new and the changed file
    assert assert_consistent(kb) == {c.id for c in expected_chunks(bot)}
    assert not kb.is_stale()


def test_a_changed_file_replaces_exactly_its_chunks(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> None:
    bot = make_bot(tmp_path)
    kb = open_kb(bot, embedder)
    kb.ingest()
    before = chunk_ids_by_source(kb)

    (bot / "knowledge/machines/error-codes.md").write_text(
        "# Error codes\n\n## E17\n\nError E17 means the water tank is empty.\n\n"
        "## E99\n\nError E99 means the boiler thermostat tripped; call support.\n"
    )
    report = kb.ingest()
    assert report.updated == 1
    after = chunk_ids_by_source(kb)
    for name, ids in before.items():
        if name != "machines/error-codes.md":
            assert after[name] == ids
    old, new = before["machines/error-codes.md"], after["machines/error-codes.md"]
    store_ids = assert_consistent(kb)
    assert new <= store_ids and not (old - new) & store_ids
    found = kb.retriever.retrieve("boiler thermostat tripped E99", mode="lexical", threshold=0)
    assert found[0].source == "machines/error-codes.md" and "E99" in found[0].text
    assert kb.retriever.retrieve("oily bean jammed grinder burrs", mode="lexical", filters={"source": "machines/error"}) == []


def _pdf_corrupt() -> bytes:
    return b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer garbage\x00\xff%%EOF"


def test_broken_sources_are_reported_and_the_rest_is_ingested(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> None:
    bot = make_bot(tmp_path)
    broken: dict[str, str | bytes] = {
        "broken/corrupt.pdf": _pdf_corrupt(),
        "broken/empty.md": "",
        "broken/binary.txt": bytes(range(256)) * 8,
        "broken/bad-columns.csv": "title,body\nHello,World\n",
    }
    write_files(bot / "knowledge", broken)
    with open(bot / "knowledge/broken/huge.txt", "wb") as handle:  # 50 MB, sparse: never read
        handle.truncate(50 * 1024 * 1024)
    kb = open_kb(bot, embedder)
    report = kb.ingest()
    failed = {f["source"]: f["reason"] for f in report.failed}
    assert set(failed) == {*broken, "broken/huge.txt"}, failed
    assert all(reason for reason in failed.values())
    assert "MB" in failed["broken/huge.txt"]
    assert report.added == len(CORPUS)
    assert_consistent(kb)
    assert not kb.is_stale()  # known-broken files do not make the index stale


def test_a_source_that_breaks_keeps_its_previous_chunks(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> None:
    bot = make_bot(tmp_path)
    kb = open_kb(bot, embedder)
    kb.ingest()
    before = chunk_ids_by_source(kb)["faq.csv"]
    (bot / "knowledge/faq.csv").write_text("title,body\nno,columns\n")
    report = kb.ingest()
    assert [f["source"] for f in report.failed] == ["faq.csv"] and report.removed == 0
    assert chunk_ids_by_source(kb)["faq.csv"] == before
    assert kb.retriever.retrieve("do gift cards expire", k=1)[0].source == "faq.csv#gift-cards"


def test_only_restricts_the_run_to_the_given_folders(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> None:
    bot = make_bot(tmp_path)
    kb = open_kb(bot, embedder)
    report = kb.ingest(only=["shop"])
    assert report.added == 3 and set(kb.manifest.entries()) == {"shop/returns.md", "shop/shipping.md", "shop/payments.txt"}
    (bot / "knowledge/shop/returns.md").unlink()
    report = kb.ingest(only=["machines/", "faq.csv"])
    assert (report.added, report.removed) == (4, 0)  # shop/ is out of scope: its deleted file stays
    assert "shop/returns.md" in kb.manifest.entries()
    assert kb.ingest(only=["shop/returns.md"]).removed == 1


def test_rebuild_and_model_change(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> None:
    bot = make_bot(tmp_path, {"a.md": "# A\n\nAlpha text about espresso.\n"})
    sync(KnowledgeSettings(), bot, bot / "data", embedder=embedder)

    other = CountingEmbedder(embedder)
    other.model_id = "another-model"
    with pytest.raises(EmbeddingModelError, match="--rebuild"):
        sync(KnowledgeSettings(), bot, bot / "data", embedder=other)
    report = sync(KnowledgeSettings(), bot, bot / "data", embedder=other, rebuild=True)
    assert report.added == 1 and other.texts == 1 and report.chunks == 1


def test_ingest_fills_in_texts_and_vectors_an_earlier_lexical_index_lacks(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    bot = make_bot(tmp_path)
    kb = open_kb(bot, embedder)
    kb.ingest()
    ids = sorted(kb.lexical.ids())
    kept = kb.lexical.stored(ids)
    assert len(kept) == len(ids) and all(c.embedding is not None for c in kept.values())
    with kb.lexical.transaction() as conn:  # as an index built before payloads, and one before vectors
        conn.execute("UPDATE chunk_meta SET payload = NULL, vector = NULL WHERE rowid % 2 = 0")
        conn.execute("UPDATE chunk_meta SET vector = NULL WHERE rowid % 2 = 1")
    assert len(kb.lexical.incomplete()) == len(ids)

    report = kb.ingest()
    assert report.added == report.updated == report.removed == 0 and report.unchanged == len(CORPUS)
    assert kb.lexical.incomplete() == []
    restored = kb.lexical.stored(ids)
    for cid in ids:
        assert (restored[cid].text, restored[cid].metadata) == (kept[cid].text, kept[cid].metadata)
        # Chroma's copy (read back for the backfill) is renormalised: equal to the last bits.
        assert np.allclose(restored[cid].embedding, kept[cid].embedding, rtol=0, atol=1e-6)


def test_reconcile_removes_orphans_and_repairs_missing_vectors(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> None:
    bot = make_bot(tmp_path)
    kb = open_kb(bot, embedder)
    kb.ingest()
    orphan = Chunk(id="orphan", source="gone.md", origin="gone.md", title="Gone", section="", text="stale text",
                   embed_text="stale text", ordinal=0)
    kb.store.upsert([orphan], embedder.embed(["stale text"]))
    kb.lexical.replace([orphan])
    victim = min(chunk_ids_by_source(kb)["shop/shipping.md"])
    kb.store.delete([victim])  # e.g. a Chroma folder restored from an older backup

    report = kb.ingest()
    assert report.added == 1 and report.unchanged == len(CORPUS) - 1  # shipping.md was ingested again
    ids = assert_consistent(kb)
    assert "orphan" not in ids and victim in ids


def test_missing_knowledge_folder_is_a_config_error(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> None:
    (tmp_path / "bot").mkdir()
    with pytest.raises(KnowledgeConfigError, match="knowledge folder"):
        sync(KnowledgeSettings(), tmp_path / "bot", tmp_path / "bot/data", embedder=embedder)


def test_two_ingests_never_write_at_once(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> None:
    bot = make_bot(tmp_path, {"a.md": "# A\n\nAlpha.\n"})
    with ingest_lock(bot / "data"), pytest.raises(IndexUnavailable, match="another `botkit ingest`"):
        sync(KnowledgeSettings(), bot, bot / "data", embedder=embedder)


KILLER = """
import os, sys
from pathlib import Path
from knowledge import ingest
from knowledge.embeddings import load_embedder
from knowledge.settings import KnowledgeSettings
from knowledge.store import VectorStore

kill_after = int(sys.argv[2])
original = VectorStore.upsert
calls = 0

def upsert(self, chunks, embeddings):
    global calls
    original(self, chunks, embeddings)
    calls += 1
    if calls == kill_after:
        os._exit(17)  # killed between the Chroma write and the manifest commit

VectorStore.upsert = upsert
ingest.WINDOW_BATCHES = 1  # windows of 8 chunks: several writes
bot = Path(sys.argv[1])
ingest.sync(KnowledgeSettings(embedding_batch_size=8), bot, bot / "data", embedder=load_embedder(device="cpu"))
print("finished without being killed")
"""


def _article(topic: str, version: int) -> str:
    return "".join(
        f"## {topic} part {i}\n\n{topic.title()} note {i}, revision {version}: keep the {topic} clean and dry.\n\n"
        for i in range(3)
    )


@pytest.mark.faults
def test_killed_ingest_then_rerun_leaves_a_consistent_index(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> None:
    topics = ["boiler", "grinder", "tank", "wand", "tray", "hopper", "filter", "pump", "gasket", "screen"]
    bot = make_bot(tmp_path, {f"{t}.md": f"# {t}\n\n" + _article(t, 1) for t in topics})
    script = tmp_path / "killer.py"
    script.write_text(textwrap.dedent(KILLER))

    def killed_run(after: int) -> None:
        result = subprocess.run([sys.executable, str(script), str(bot), str(after)], cwd=REPO,
                                capture_output=True, text=True, timeout=300, env={**os.environ})
        assert result.returncode == 17, result.stdout + result.stderr[-3000:]

    # 1. A first ingest killed after its second write.
    killed_run(2)
    kb = open_kb(bot, embedder)
    store_ids, manifest_ids, fts_ids = index_ids(kb)
    assert manifest_ids == fts_ids and manifest_ids < store_ids  # orphan vectors from the unfinished window
    kb.ingest()
    assert assert_consistent(kb) == {c.id for c in expected_chunks(bot)}

    # 2. Half the sources change; the update is killed after its first write.
    for topic in topics[:5]:
        (bot / f"knowledge/{topic}.md").write_text(f"# {topic}\n\n" + _article(topic, 2))
    killed_run(1)
    report = kb.ingest()
    assert report.updated + report.unchanged == len(topics) and report.updated >= 1
    assert assert_consistent(kb) == {c.id for c in expected_chunks(bot)}
    boiler = kb.retriever.retrieve("boiler note revision", mode="lexical", threshold=0, filters={"source": "boiler.md"})
    assert len(boiler) == 3 and all("revision 2" in p.text for p in boiler)


def test_read_ahead_keeps_order_raises_at_the_failing_item_and_stops_when_closed() -> None:
    from knowledge.ingest import _ahead

    assert list(_ahead(range(50), lambda i: i * i, depth=3)) == [(i, i * i) for i in range(50)]

    def boom(i: int) -> int:
        if i == 4:
            raise RuntimeError("parser bug")
        return i

    seen = []
    with pytest.raises(RuntimeError, match="parser bug"):
        for item, _ in _ahead(range(10), boom, depth=2):
            seen.append(item)
    assert seen == [0, 1, 2, 3]

    started: list[int] = []
    reader = _ahead(range(1000), lambda i: started.append(i) or i, depth=2)
    assert next(reader) == (0, 0)
    reader.close()  # stops the thread: it does not read the whole list
    assert len(started) < 10


def test_a_failed_write_stops_the_ingest_and_the_next_one_completes_it(
        tmp_path: Path, embedder: SentenceTransformerEmbedder, monkeypatch: pytest.MonkeyPatch) -> None:
    from knowledge import ingest
    from knowledge.store import VectorStore

    bot = make_bot(tmp_path)
    monkeypatch.setattr(ingest, "WINDOW_BATCHES", 1)  # several windows, so writes overlap embedding
    writes = 0
    original = VectorStore.upsert

    def failing_upsert(self, chunks, vectors):  # type: ignore[no-untyped-def]
        nonlocal writes
        writes += 1
        if writes == 2:
            raise OSError("disk full")
        return original(self, chunks, vectors)

    monkeypatch.setattr(VectorStore, "upsert", failing_upsert)
    with pytest.raises(OSError, match="disk full"):
        sync(KnowledgeSettings(embedding_batch_size=2), bot, bot / "data", embedder=embedder)
    monkeypatch.setattr(VectorStore, "upsert", original)
    kb = open_kb(bot, embedder)
    report = kb.ingest()
    assert report.added >= 1 and not report.failed
    assert assert_consistent(kb) == {c.id for c in expected_chunks(bot)}
