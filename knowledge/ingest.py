"""Incremental ingestion: bring the index in line with the knowledge sources.

:func:`sync` discovers the sources, reads each one and compares its fingerprint with the
manifest. Unchanged sources are not parsed or embedded. New and changed ones are parsed,
chunked and embedded in batches that span sources, then written per window of sources.
The three stages overlap: a read-ahead thread parses the next sources and a writer thread
writes the previous window while this one embeds; windows are still written one at a
time and in order:

1. the new chunks are upserted into Chroma;
2. the FTS rows and the manifest rows are replaced in one SQLite transaction;
3. the source's old chunk ids that are not in the new set are deleted from Chroma.

Killed between any two steps, the store holds at worst extra vectors that the manifest
does not name; every run starts by reconciling (deleting such orphans, and re-ingesting
sources whose manifest chunks are missing from Chroma), so a re-run always ends with
Chroma ids == manifest ids == FTS ids. A source that fails to read or parse keeps its
previous chunks and is reported in ``failed``; a source that disappeared is removed.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from knowledge.chunking import chunk_documents
from knowledge.embeddings import Embedder
from knowledge.errors import IndexUnavailable, SourceError
from knowledge.lexical import LexicalIndex
from knowledge.manifest import Manifest, ManifestEntry, now
from knowledge.observe import emit
from knowledge.settings import KnowledgeSettings
from knowledge.sources import discover, parse, read
from knowledge.store import VectorStore
from knowledge.types import Chunk, SourceRef

#: Sources are written in windows of about this many embedding batches. One window is one
#: ``embed()`` call, which sorts its texts by length before batching, so a larger window pads
#: less. With batches of 32 on a 2-core CPU, embedding the same 2460 chunks took 74-79 s in
#: one call, 85-97 s in two (2071 + 389) and 114-127 s in six windows of 410
#: (benchmarks/bench_ingest.py corpus, this machine); 64 batches a window made the ingestion
#: of that corpus 15 % slower than one raw ``encode``. A window costs little memory (its
#: texts and vectors: about 10 MB for 8192 chunks), and crash-safe writes still come every
#: few thousand chunks on large knowledge bases.
WINDOW_BATCHES = 256

#: Sources read and parsed ahead of the one being embedded (on a thread of their own).
READ_AHEAD = 16

#: Chunks read back from the vector store at a time to fill in what an earlier version of
#: the lexical index did not keep (texts and vectors; see :func:`reconcile`).
BACKFILL_BATCH = 1000


@dataclass
class IngestReport:
    """What one :func:`sync` did. ``chunks`` is the total in the index afterwards."""

    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    chunks: int = 0
    seconds: float = 0.0
    embedded: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape printed by ``botkit ingest --json``."""
        data = asdict(self)
        data.pop("embedded")
        data["seconds"] = round(self.seconds, 3)
        return data


@dataclass(frozen=True)
class IngestProgress:
    """One source handled: ``status`` is added, updated, unchanged, failed or removed."""

    source: str
    status: str
    done: int
    total: int
    chunks: int = 0


ProgressCallback = Callable[[IngestProgress], None]


@dataclass
class _Pending:
    ref: SourceRef
    fingerprint: str
    chunks: list[Chunk]
    previous: ManifestEntry | None
    size: int | None
    mtime: float | None


def default_chroma_path(settings: KnowledgeSettings, data_dir: Path) -> Path:
    """``knowledge.chroma_path`` (absolute) or ``<data_dir>/chroma``."""
    if settings.chroma_path and Path(settings.chroma_path).expanduser().is_absolute():
        return Path(settings.chroma_path).expanduser()
    return data_dir / "chroma"


def sync(
    settings: KnowledgeSettings,
    root: Path,
    data_dir: Path,
    *,
    embedder: Embedder,
    progress: ProgressCallback | None = None,
    rebuild: bool = False,
    only: Sequence[str] | None = None,
    chroma_path: Path | None = None,
) -> IngestReport:
    """Ingest the sources of ``settings`` (folder resolved against the bot directory ``root``).

    ``only`` restricts the run to sources whose name equals, or sits under, one of the given
    names (``billing/``); others are left as they are. ``rebuild`` drops the index first
    (needed after changing the embedding model).
    """
    with ingest_lock(data_dir):
        store = VectorStore.open(
            model_id=embedder.model_id,
            dimension=embedder.dimension,
            path=chroma_path or default_chroma_path(settings, data_dir),
            url=settings.chroma_url,
            collection=settings.collection,
            rebuild=rebuild,
        )
        lexical = LexicalIndex(data_dir / "lexical.db")
        try:
            return sync_into(store, lexical, settings, root, embedder=embedder, progress=progress, rebuild=rebuild, only=only)
        finally:
            lexical.close()


def sync_into(
    store: VectorStore,
    lexical: LexicalIndex,
    settings: KnowledgeSettings,
    root: Path,
    *,
    embedder: Embedder,
    progress: ProgressCallback | None = None,
    rebuild: bool = False,
    only: Sequence[str] | None = None,
) -> IngestReport:
    """:func:`sync` on an already opened store and lexical database."""
    started = time.perf_counter()
    manifest = Manifest(lexical)
    if rebuild:
        with lexical.transaction():
            lexical.clear()
            manifest.clear()
    entries = reconcile(store, lexical, manifest)
    refs, discover_failures = discover(settings, root)
    refs = [r for r in refs if _in_scope(r.name, only)]
    report = IngestReport()
    failed_names: set[str] = set()
    for name, reason in discover_failures:
        if _in_scope(name, only):
            report.failed.append({"source": name, "reason": reason})
            failed_names.add(name)
    total = len(refs)
    done = 0
    done_lock = threading.Lock()

    def tell(source: str, status: str, chunks: int = 0) -> None:
        nonlocal done
        with done_lock:  # the writer thread reports the sources it wrote
            done += 1
            now_done = done
        if progress is not None:
            progress(IngestProgress(source=source, status=status, done=now_done, total=total, chunks=chunks))

    window: list[_Pending] = []
    window_chunks = 0
    touched: list[ManifestEntry] = []
    limit = settings.embedding_batch_size * WINDOW_BATCHES
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="botkit-ingest-write")
    writing: Future[None] | None = None

    def flush() -> None:
        """Embed the window here; write it on the writer thread once the previous write ended."""
        nonlocal writing, window, window_chunks
        chunks = [c for pending in window for c in pending.chunks]
        vectors = embedder.embed([c.embed_text for c in chunks])
        report.embedded += len(chunks)
        if writing is not None:
            writing.result()
        writing = writer.submit(_write_window, store, lexical, manifest, embedder.model_id, window, chunks, vectors,
                                report, tell)
        window, window_chunks = [], 0

    try:
        for ref, outcome in _ahead(refs, lambda r: _prepare(r, entries.get(r.name), settings, embedder.model_id)):
            if isinstance(outcome, SourceError):
                report.failed.append({"source": ref.name, "reason": str(outcome)})
                failed_names.add(ref.name)
                tell(ref.name, "failed")
            elif isinstance(outcome, ManifestEntry):
                report.unchanged += 1
                if outcome is not entries.get(ref.name):
                    touched.append(outcome)
                tell(ref.name, "unchanged", len(outcome.chunk_ids))
            else:
                window.append(outcome)
                window_chunks += len(outcome.chunks)
                if window_chunks >= limit:
                    flush()
        if window:
            flush()
    finally:
        try:
            if writing is not None:
                writing.result()  # never leave a window half-written behind us
        finally:
            writer.shutdown(wait=True)
    if touched:
        manifest.put(touched)

    seen = {r.name for r in refs}
    keep_urls = bool(discover_failures)  # a failed sitemap hides its pages: never delete on that evidence
    gone = [
        entry
        for name, entry in entries.items()
        if name not in seen and name not in failed_names and _in_scope(name, only)
        and not (keep_urls and "://" in name)
    ]
    if gone:
        _remove_sources(store, lexical, manifest, gone)
        report.removed = len(gone)
        for entry in gone:
            if progress is not None:
                progress(IngestProgress(source=entry.source, status="removed", done=done, total=total))
    if report.added or report.updated or report.removed:
        lexical.optimize()  # one FTS segment again: searches read one b-tree, not one a write
    report.chunks = store.count()
    report.seconds = time.perf_counter() - started
    manifest.set_meta("last_ingest", {"at": now(), "model": embedder.model_id, "report": report.to_dict()})
    emit("ingest", report=report)  # knowledge.observe: ingestion counts for metrics
    return report


def reconcile(store: VectorStore, lexical: LexicalIndex, manifest: Manifest) -> dict[str, ManifestEntry]:
    """Make Chroma, the FTS table and the manifest agree; return the manifest entries.

    Chunks that no manifest row names are deleted. A manifest row naming chunks missing from
    Chroma or FTS is dropped (with its chunks), so its source is ingested again. Lexical
    rows without the chunk's text or vector (kept since later versions, for searches to
    read instead of Chroma) get them from Chroma, once.
    """
    entries = manifest.entries()
    named = {cid for entry in entries.values() for cid in entry.chunk_ids}
    in_store = store.ids()
    in_fts = lexical.ids()
    broken = [e for e in entries.values() if not set(e.chunk_ids) <= in_store or not set(e.chunk_ids) <= in_fts]
    if broken:
        _remove_sources(store, lexical, manifest, broken)
        for entry in broken:
            del entries[entry.source]
        named = {cid for entry in entries.values() for cid in entry.chunk_ids}
    orphans_fts = in_fts - named
    if orphans_fts:
        lexical.delete(orphans_fts)
    orphans = in_store - named
    if orphans:
        store.delete(sorted(orphans))
    incomplete = lexical.incomplete()
    for start in range(0, len(incomplete), BACKFILL_BATCH):  # rows an earlier version kept without them
        lexical.backfill(store.get(incomplete[start : start + BACKFILL_BATCH], with_embeddings=True))
    return entries


def _prepare(ref: SourceRef, previous: ManifestEntry | None, settings: KnowledgeSettings,
             model_id: str) -> _Pending | ManifestEntry | SourceError:
    """Read, fingerprint, parse and chunk one source (on the read-ahead thread).

    The manifest entry when the source is unchanged (a new one when only its size or mtime
    moved), the chunks to embed, or the error that made it fail.
    """
    try:
        size, mtime = _stat(ref)
        raw = read(ref, settings)
        if previous is not None and previous.fingerprint == raw.fingerprint and previous.model_id == model_id:
            return previous if (size, mtime) == (previous.size, previous.mtime) else _restat(previous, size, mtime)
        chunks = chunk_documents(parse(raw), chunk_size=settings.chunk_size, chunk_overlap=settings.chunk_overlap)
        if not chunks:
            raise SourceError("no text to index (the source is empty or has no text layer)")
    except SourceError as exc:
        return exc
    return _Pending(ref, raw.fingerprint, chunks, previous, size, mtime)


_T = TypeVar("_T")
_R = TypeVar("_R")
_DONE = object()


def _ahead(items: Sequence[_T], fn: Callable[[_T], _R], depth: int = READ_AHEAD) -> Iterator[tuple[_T, _R]]:
    """``(item, fn(item))`` in order, computed up to ``depth`` items ahead on a thread.

    Sources are parsed while the previous window embeds. An exception raised by ``fn``
    is raised here, at its item; closing the generator early stops the thread.
    """
    results: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                try:
                    results.put((item, fn(item), None))
                except BaseException as exc:  # noqa: BLE001 - re-raised in the consuming thread
                    results.put((item, None, exc))
                    return
        finally:
            results.put(_DONE)

    thread = threading.Thread(target=produce, name="botkit-ingest-read", daemon=True)
    thread.start()
    try:
        while (entry := results.get()) is not _DONE:
            item, value, error = entry
            if error is not None:
                raise error
            yield item, value
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                results.get(timeout=0.1)
            except queue.Empty:
                pass


def _write_window(
    store: VectorStore,
    lexical: LexicalIndex,
    manifest: Manifest,
    model_id: str,
    window: list[_Pending],
    chunks: list[Chunk],
    vectors: Any,
    report: IngestReport,
    tell: Callable[[str, str, int], None],
) -> None:
    """Write one embedded window, in the crash-safe order of the module docstring."""
    store.upsert(chunks, vectors)  # 1. vectors
    stale: list[str] = []
    entries: list[ManifestEntry] = []
    for pending in window:
        ids = tuple(c.id for c in pending.chunks)
        old = set(pending.previous.chunk_ids) if pending.previous else set()
        stale.extend(sorted(old - set(ids)))
        entries.append(
            ManifestEntry(
                source=pending.ref.name, fingerprint=pending.fingerprint, chunk_ids=ids,
                model_id=model_id, ingested_at=now(), size=pending.size, mtime=pending.mtime,
                format=_format(pending.ref),
            )
        )
    with lexical.transaction():  # 2. FTS + manifest, atomically
        lexical.replace(chunks, remove=stale, vectors=vectors)
        manifest.put(entries)
    if stale:
        store.delete(stale)  # 3. old vectors
    for pending in window:
        status = "updated" if pending.previous else "added"
        setattr(report, status, getattr(report, status) + 1)
        tell(pending.ref.name, status, len(pending.chunks))


def _remove_sources(store: VectorStore, lexical: LexicalIndex, manifest: Manifest, entries: Sequence[ManifestEntry]) -> None:
    ids = [cid for entry in entries for cid in entry.chunk_ids]
    with lexical.transaction():
        lexical.delete(ids)
        manifest.remove(e.source for e in entries)
    store.delete(ids)


def _in_scope(name: str, only: Sequence[str] | None) -> bool:
    if not only:
        return True
    for prefix in only:
        prefix = prefix.strip("/")
        if not prefix or prefix == "." or name == prefix or name.startswith((prefix + "/", prefix + "#")):
            return True
    return False


def _stat(ref: SourceRef) -> tuple[int | None, float | None]:
    if ref.kind != "file":
        return None, None
    try:
        info = os.stat(ref.location)
    except OSError:
        return None, None
    return info.st_size, info.st_mtime


def _restat(entry: ManifestEntry, size: int | None, mtime: float | None) -> ManifestEntry:
    return ManifestEntry(
        entry.source, entry.fingerprint, entry.chunk_ids, entry.model_id, entry.ingested_at, size, mtime, entry.format
    )


def _format(ref: SourceRef) -> str:
    if ref.kind == "url":
        return "url"
    return Path(ref.name).suffix.lower().lstrip(".") or "none"


@contextmanager
def ingest_lock(data_dir: Path) -> Iterator[None]:
    """Hold ``<data_dir>/ingest.lock`` so two ingests never write the same index at once."""
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock
        yield
        return
    with open(data_dir / "ingest.lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise IndexUnavailable(
                f"another `botkit ingest` is writing {data_dir}; wait for it to finish and run this again"
            ) from exc
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
