"""The knowledge base facade used by the dialogue core, the web server and the CLI.

>>> kb = KnowledgeBase.open(config.knowledge, config.root, config.data_path,
...                         chroma_path=config.chroma_path)          # doctest: +SKIP
>>> if kb.is_empty() or kb.is_stale():
...     kb.ingest()
>>> passages = kb.retriever.retrieve("How do I reset my password?")
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from knowledge.embeddings import Embedder, embedder_for
from knowledge.ingest import IngestReport, ProgressCallback, default_chroma_path, ingest_lock, sync_into
from knowledge.lexical import LexicalIndex
from knowledge.manifest import Manifest, ManifestEntry
from knowledge.retriever import Retriever
from knowledge.settings import KnowledgeSettings
from knowledge.store import VectorStore


@dataclass(frozen=True)
class KnowledgeStats:
    """What ``botkit kb stats`` shows."""

    sources: int
    chunks: int
    formats: dict[str, int]
    model: str
    dimension: int
    index: str
    lexical_db: str
    last_ingest: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "sources": self.sources,
            "chunks": self.chunks,
            "formats": dict(self.formats),
            "model": self.model,
            "dimension": self.dimension,
            "index": self.index,
            "lexical_db": self.lexical_db,
            "last_ingest": self.last_ingest,
        }


class KnowledgeBase:
    """One bot's index: the Chroma collection, the lexical database and the manifest."""

    def __init__(
        self,
        *,
        settings: KnowledgeSettings,
        root: Path,
        data_dir: Path,
        store: VectorStore,
        lexical: LexicalIndex,
        embedder: Embedder,
    ) -> None:
        self.settings = settings
        self.root = root
        self.data_dir = data_dir
        self.store = store
        self.lexical = lexical
        self.embedder = embedder
        self.manifest = Manifest(lexical)
        self.retriever = Retriever(
            store=store, lexical=lexical, embedder=embedder, settings=settings, origins=self.manifest.sources
        )

    @classmethod
    def open(
        cls,
        settings: KnowledgeSettings,
        root: Path,
        data_dir: Path,
        *,
        chroma_path: Path | None = None,
        embedder: Embedder | None = None,
        rebuild: bool = False,
    ) -> KnowledgeBase:
        """Load the embedder (cached per process) and open the index of a bot.

        ``root`` is the bot directory (``knowledge.path`` is relative to it), ``data_dir``
        holds ``lexical.db`` and, unless ``chroma_path``/``knowledge.chroma_url`` say
        otherwise, ``chroma/``. Raises :class:`~knowledge.errors.EmbeddingModelError` when
        the index was built with another model (``rebuild=True`` drops it instead).
        """
        embedder = embedder or embedder_for(settings)
        store = VectorStore.open(
            model_id=embedder.model_id,
            dimension=embedder.dimension,
            path=chroma_path or default_chroma_path(settings, data_dir),
            url=settings.chroma_url,
            collection=settings.collection,
            rebuild=rebuild,
        )
        lexical = LexicalIndex(data_dir / "lexical.db")
        return cls(settings=settings, root=root, data_dir=data_dir, store=store, lexical=lexical, embedder=embedder)

    @property
    def knowledge_folder(self) -> Path:
        """The absolute knowledge folder."""
        folder = Path(self.settings.path).expanduser()
        return folder if folder.is_absolute() else self.root / folder

    def ingest(
        self, *, progress: ProgressCallback | None = None, rebuild: bool = False, only: Sequence[str] | None = None
    ) -> IngestReport:
        """Bring the index in line with the sources (see :func:`knowledge.ingest.sync`)."""
        with ingest_lock(self.data_dir):
            return sync_into(
                self.store, self.lexical, self.settings, self.root,
                embedder=self.embedder, progress=progress, rebuild=rebuild, only=only,
            )

    def is_empty(self) -> bool:
        """True when nothing has been ingested."""
        return self.store.count() == 0

    def is_stale(self) -> bool:
        """True when the knowledge folder (or the URL list) changed since the last ingest.

        Cheap: compares file names, sizes and mtimes with the manifest; reads no file and
        fetches no URL (a changed web page is only seen by the next ingest).
        """
        entries = self.manifest.entries()
        if any(url not in entries for url in self.settings.urls):
            return True
        folder = self.knowledge_folder
        if not folder.is_dir():
            return bool([name for name in entries if "://" not in name])
        from knowledge.sources import SUPPORTED_SUFFIXES
        from knowledge.sources.files import walk_folder

        files = walk_folder(folder, SUPPORTED_SUFFIXES)
        failed = {f["source"] for f in (self._last_ingest() or {}).get("report", {}).get("failed", [])}
        names = {ref.name for ref in files}
        if any(name not in names for name in entries if "://" not in name):
            return True
        for ref in files:
            entry = entries.get(ref.name)
            if entry is None:
                if ref.name in failed:
                    continue  # known broken; ingesting again will not help
                return True
            try:
                info = os.stat(ref.location)
            except OSError:
                return True
            if (info.st_size, info.st_mtime) != (entry.size, entry.mtime):
                return True
        return False

    def stats(self) -> KnowledgeStats:
        """Sources, chunks, per-format counts, model, index location, last ingest."""
        entries = self.manifest.entries()
        formats = Counter(entry.format or "unknown" for entry in entries.values())
        last = self._last_ingest()
        return KnowledgeStats(
            sources=len(entries),
            chunks=self.store.count(),
            formats=dict(sorted(formats.items())),
            model=self.store.model_id,
            dimension=self.store.dimension,
            index=f"{self.store.location} (collection {self.store.name})",
            lexical_db=str(self.lexical.path),
            last_ingest=last,
        )

    def close(self) -> None:
        """Close the lexical database (Chroma clients need no closing)."""
        self.lexical.close()

    def _last_ingest(self) -> dict[str, Any] | None:
        value = self.manifest.get_meta("last_ingest")
        return value if isinstance(value, dict) else None


def read_stats(
    settings: KnowledgeSettings, data_dir: Path, *, chroma_path: Path | None = None
) -> KnowledgeStats:
    """Index statistics without loading the embedding model (``botkit kb stats``)."""
    store = VectorStore.open_existing(
        path=chroma_path or default_chroma_path(settings, data_dir), url=settings.chroma_url, collection=settings.collection
    )
    lexical_path = data_dir / "lexical.db"
    entries: dict[str, ManifestEntry] = {}
    last: dict[str, Any] | None = None
    if lexical_path.exists():
        lexical = LexicalIndex(lexical_path)
        try:
            manifest = Manifest(lexical)
            entries = manifest.entries()
            value = manifest.get_meta("last_ingest")
            last = value if isinstance(value, dict) else None
        finally:
            lexical.close()
    location = settings.chroma_url or str(chroma_path or default_chroma_path(settings, data_dir))
    return KnowledgeStats(
        sources=len(entries),
        chunks=store.count() if store else 0,
        formats=dict(sorted(Counter(e.format or "unknown" for e in entries.values()).items())),
        model=(store.model_id if store else "") or settings.embedding_model,
        dimension=store.dimension if store else 0,
        index=f"{location} (collection {settings.collection})",
        lexical_db=str(lexical_path),
        last_ingest=last,
    )
