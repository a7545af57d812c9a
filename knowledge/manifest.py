"""The ingest manifest: which sources are in the index, as which chunks.

A table in the lexical database (``<data_dir>/lexical.db``, schema in
:mod:`knowledge.lexical`): per source name its content fingerprint, its chunk ids, the
embedding model that produced them, when it was ingested and the file's size and mtime
(for a cheap staleness check). The manifest row of a source
is committed only after its chunks are in the vector store, so the manifest never names
chunks that are not stored; :func:`knowledge.ingest.sync` reconciles the other direction.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from knowledge.errors import IndexUnavailable
from knowledge.lexical import LexicalIndex


@dataclass(frozen=True)
class ManifestEntry:
    """One ingested source."""

    source: str
    fingerprint: str
    chunk_ids: tuple[str, ...]
    model_id: str
    ingested_at: float
    size: int | None = None
    mtime: float | None = None
    format: str | None = None


class Manifest:
    """Manifest rows in the lexical database; writes join :meth:`LexicalIndex.transaction`."""

    def __init__(self, db: LexicalIndex) -> None:
        self.db = db

    def entries(self) -> dict[str, ManifestEntry]:
        """Every row, by source name."""
        rows = self._query("SELECT source, fingerprint, chunk_ids, model_id, ingested_at, size, mtime, format FROM manifest")
        return {
            row[0]: ManifestEntry(row[0], row[1], tuple(json.loads(row[2])), row[3], row[4], row[5], row[6], row[7])
            for row in rows
        }

    def sources(self) -> list[str]:
        """Every ingested source name (cheaper than :meth:`entries`)."""
        return [row[0] for row in self._query("SELECT source FROM manifest")]

    def put(self, entries: Iterable[ManifestEntry]) -> None:
        """Insert or replace rows."""
        rows = [
            (e.source, e.fingerprint, json.dumps(list(e.chunk_ids)), e.model_id, e.ingested_at, e.size, e.mtime, e.format)
            for e in entries
        ]
        with self.db.transaction() as conn:
            conn.executemany("INSERT OR REPLACE INTO manifest VALUES (?,?,?,?,?,?,?,?)", rows)

    def remove(self, sources: Iterable[str]) -> None:
        """Delete rows."""
        with self.db.transaction() as conn:
            conn.executemany("DELETE FROM manifest WHERE source = ?", [(s,) for s in sources])

    def clear(self) -> None:
        """Delete every row and the recorded metadata."""
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM manifest")
            conn.execute("DELETE FROM kb_meta")

    def set_meta(self, key: str, value: Any) -> None:
        """Record a JSON value (the last ingest report…)."""
        with self.db.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO kb_meta VALUES (?, ?)", (key, json.dumps(value, default=str)))

    def get_meta(self, key: str) -> Any:
        """A recorded JSON value, or None."""
        rows = self._query("SELECT value FROM kb_meta WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else None

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            with self.db.lock:
                return self.db.conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise IndexUnavailable(f"manifest in {self.db.path}: {exc}; run `botkit ingest --rebuild`") from exc


def now() -> float:
    """The current time as a UNIX timestamp (one place, for tests)."""
    return time.time()
