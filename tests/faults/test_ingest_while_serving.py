"""Re-ingesting a changed document while questions are answered.

A question asked while a source is being re-ingested must be answered from the old or
the new version of that source, never from a mixture and never with an error or an
empty result. The vector store's writes are slowed down (``SlowWrites``) so that
questions land in the windows between ingestion's steps. Ingestion upserts the new chunks, then switches the FTS rows and the
manifest in one SQLite transaction, then deletes the old vectors; the retriever only
accepts chunks that the committed lexical side table names, so that transaction is the
atomic switch from one version to the other.

Sizes: ``BOTKIT_FAULTS_FULL=1`` runs 30 re-ingests instead of 6.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from knowledge.embeddings import load_embedder
from knowledge.index import KnowledgeBase
from knowledge.settings import KnowledgeSettings

pytestmark = pytest.mark.faults

FULL = os.environ.get("BOTKIT_FAULTS_FULL") == "1"
REINGESTS = 30 if FULL else 6
STEPS = ("Unplug the machine and let it cool", "Empty the drip tray and the water tank",
         "Mix the descaling solution with one litre of water", "Run the descaling cycle from the menu",
         "Rinse the tank and run two cycles of clean water", "Reset the descaling counter in settings")
QUESTION = "How do I descale the espresso machine?"
PAUSE_S = 0.3  # between ingestion's steps: without the retriever's committed-ids filter, vector-only mixes


def guide(edition: str) -> str:
    """The descaling guide, every section naming its edition."""
    sections = [f"# Descaling the Brewmaster espresso machine\n\nThis is edition {edition} of the descaling guide."]
    for number, step in enumerate(STEPS, start=1):
        sections.append(
            f"## Descaling step {number}\n\n{step} (edition {edition}). Descaling the espresso machine removes "
            f"limescale; edition {edition} of this step applies to every Brewmaster model.")
    return "\n\n".join(sections) + "\n"


def editions(text: str) -> set[str]:
    return {word for word in ("ALPHA", "BRAVO") if f"edition {word}" in text}


class SlowWrites:
    """Widen the windows between ingestion's steps, as a slow Chroma server would."""

    def __init__(self, store: object, pause_s: float) -> None:
        self.store, self.pause_s = store, pause_s
        self.upsert, self.delete = store.upsert, store.delete  # type: ignore[attr-defined]

    def slow_upsert(self, *args: object, **kwargs: object) -> None:
        self.upsert(*args, **kwargs)
        time.sleep(self.pause_s)  # new vectors visible, manifest not switched yet

    def slow_delete(self, *args: object, **kwargs: object) -> None:
        time.sleep(self.pause_s)  # manifest switched, old vectors still there
        self.delete(*args, **kwargs)


@pytest.mark.parametrize("hybrid", [True, False], ids=["hybrid", "vector-only"])
def test_questions_during_reingest_see_one_version(tmp_path: Path, hybrid: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    bot = tmp_path / "bot"
    doc = bot / "knowledge" / "machines" / "descaling.md"
    doc.parent.mkdir(parents=True)
    (bot / "knowledge" / "returns.md").write_text(
        "# Returns\n\nUnused items can be returned within 30 days of delivery.\n", encoding="utf-8")
    doc.write_text(guide("ALPHA"), encoding="utf-8")
    settings = KnowledgeSettings(chunk_size=300, chunk_overlap=0, hybrid=hybrid)
    kb = KnowledgeBase.open(settings, bot, bot / "data", embedder=load_embedder(device="cpu"))
    slow = SlowWrites(kb.store, PAUSE_S)
    monkeypatch.setattr(kb.store, "upsert", slow.slow_upsert)
    monkeypatch.setattr(kb.store, "delete", slow.slow_delete)
    try:
        kb.ingest()
        stop = threading.Event()
        results: list[tuple[set[str], int]] = []
        errors: list[BaseException] = []

        def ask() -> None:
            while not stop.is_set():
                try:
                    passages = kb.retriever.retrieve(QUESTION, k=5)
                except BaseException as exc:  # noqa: BLE001 - counted and reported
                    errors.append(exc)
                    continue
                seen: set[str] = set()
                for passage in passages:
                    if passage.source.startswith("machines/descaling"):
                        seen |= editions(passage.text)
                results.append((seen, len(passages)))

        askers = [threading.Thread(target=ask, daemon=True) for _ in range(2)]
        for thread in askers:
            thread.start()
        started = time.monotonic()
        for round_ in range(REINGESTS):
            doc.write_text(guide("BRAVO" if round_ % 2 == 0 else "ALPHA"), encoding="utf-8")
            report = kb.ingest()
            assert report.updated == 1 and not report.failed
        stop.set()
        for thread in askers:
            thread.join(timeout=30)
        elapsed = time.monotonic() - started
    finally:
        kb.close()
    mixed = [r for r in results if len(r[0]) > 1]
    empty = [r for r in results if r[1] == 0 or not r[0]]
    print(f"\n{len(results)} questions during {REINGESTS} re-ingests in {elapsed:.1f}s: "
          f"{len(mixed)} mixed, {len(empty)} without the guide, {len(errors)} errors")
    assert not errors, errors[:3]
    assert len(results) >= REINGESTS
    assert not mixed, f"{len(mixed)} of {len(results)} answers mixed both editions"
    assert not empty, f"{len(empty)} of {len(results)} answers lacked the guide"
