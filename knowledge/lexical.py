"""Lexical search: SQLite FTS5 with BM25 ranking, in ``<data_dir>/lexical.db``.

One FTS5 table, tokenizer ``unicode61 remove_diacritics 2`` (case- and accent-insensitive
words for Latin, Greek, Cyrillic… scripts). Chinese, Japanese and Korean have no spaces
between words, so before indexing (and before querying) every run of CJK characters is
rewritten as its overlapping character bigrams ("重置密码" → "重置 置密 密码"), the
approach of Lucene's CJK analyzer: two-character words, the most common length, match
exactly, and longer words match through their bigrams. We chose this over the ``trigram``
tokenizer because trigrams cannot match two-character words.

User text is never used as FTS5 query syntax: the query is split into words, each word is
quoted, and the words are OR-ed, so BM25 ranks chunks that contain more (and rarer) query
words higher. A short list of English function words is dropped from queries.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from knowledge.errors import IndexUnavailable
from knowledge.store import StoredChunk, chunk_metadata
from knowledge.types import Chunk

TOKENIZER = "unicode61 remove_diacritics 2"
VOCABULARY_MAX_AGE_S = 5.0  # how often vocabulary() checks whether the index changed
# Column weights for bm25(): title, section, body.
_BM25 = "bm25(chunk_text, 3.0, 1.5, 1.0)"

# chunk_text (FTS5) holds the searchable text; chunk_meta, a plain table sharing its rowids,
# maps chunk ids to rows (an indexed lookup: FTS5 cannot index an UNINDEXED column) and
# holds the filter columns, in ``payload`` the chunk as the vector store holds it (its text
# and flat metadata, JSON) and in ``vector`` its embedding (float32, little-endian; 1.5 kB a
# chunk for 384 dimensions): the retriever reads its winners here, a primary-key lookup,
# instead of from Chroma (see :meth:`LexicalIndex.stored`). The ingest manifest's tables live
# in the same file.
SCHEMA = (
    "DROP TABLE IF EXISTS chunks_fts",  # the first layout; its chunks are re-ingested by reconcile
    "CREATE TABLE IF NOT EXISTS chunk_meta (rowid INTEGER PRIMARY KEY, chunk_id TEXT NOT NULL UNIQUE, "
    "source TEXT NOT NULL, origin TEXT NOT NULL, kind TEXT NOT NULL, payload TEXT, vector BLOB)",
    "CREATE INDEX IF NOT EXISTS chunk_meta_origin ON chunk_meta (origin)",
    f"CREATE VIRTUAL TABLE IF NOT EXISTS chunk_text USING fts5(title, section, body, tokenize='{TOKENIZER}')",
    "CREATE TABLE IF NOT EXISTS manifest (source TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, "
    "chunk_ids TEXT NOT NULL, model_id TEXT NOT NULL, ingested_at REAL NOT NULL, size INTEGER, mtime REAL, format TEXT)",
    "CREATE TABLE IF NOT EXISTS kb_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)

_INCOMPLETE = "payload IS NULL OR vector IS NULL"  # rows to backfill (see LexicalIndex.incomplete)
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_CJK_RUN = re.compile(f"[{_CJK}]+")
_WORD = re.compile(r"[^\W_]+")
STOPWORDS = frozenset(
    "a an and are as at be but by can do does did for from had has have how i if in is it its me my of on or "
    "our so that the their them then there these they this to was we were what when where which who why will "
    "with would you your".split()
)


def cjk_bigrams(text: str) -> str:
    """Rewrite each run of CJK characters as its space-separated character bigrams."""

    def bigrams(match: re.Match[str]) -> str:
        run = match.group(0)
        if len(run) == 1:
            return f" {run} "
        return " " + " ".join(run[i : i + 2] for i in range(len(run) - 1)) + " "

    return _CJK_RUN.sub(bigrams, text)


def match_expression(query: str) -> str | None:
    """A safe FTS5 MATCH expression for free text (quoted words joined by OR), or None."""
    terms: list[str] = []
    for word in _WORD.findall(cjk_bigrams(query)):
        if word.lower() not in STOPWORDS and word not in terms:
            terms.append(word)
    if not terms:
        # A question made only of stop words still searches them.
        terms = list(dict.fromkeys(_WORD.findall(query)))
    if not terms:
        return None
    return " OR ".join('"' + term.replace('"', '""') + '"' for term in terms[:64])


@dataclass(frozen=True)
class LexicalHit:
    """A lexical match: the chunk id, its 1-based rank and its BM25 score (higher is better)."""

    chunk_id: str
    rank: int
    score: float


class LexicalIndex:
    """The SQLite database ``lexical.db``: the FTS5 table, plus the ingest manifest's tables.

    Thread-safe. Writes go through one connection guarded by a lock: :meth:`transaction`
    groups writes to the FTS table and the manifest (see :mod:`knowledge.manifest`) so they
    commit together. Searches (:meth:`search`, :meth:`committed`) each take a read
    connection of their own from a small pool (WAL mode), so concurrent searches run in
    parallel, never wait for an ingest's write transaction, and see the last committed state.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._in_transaction = False
        self._idle: list[sqlite3.Connection] = []  # read connections not in use (list.pop/append are atomic)
        self._generation = 0  # bumped by close(): connections in use are closed when returned
        self._vocabulary: tuple[float, Any, dict[str, int]] | None = None  # (checked at, index key, words)

    @property
    def conn(self) -> sqlite3.Connection:
        """The open connection (opened, and the tables created, on first use)."""
        with self.lock:
            if self._conn is None:
                self._conn = self._open()
            return self._conn

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            for statement in SCHEMA:
                conn.execute(statement)
            columns = {row[1] for row in conn.execute("PRAGMA table_info(chunk_meta)")}
            # An index built before payloads or vectors: its chunks are read from Chroma.
            for column, kind in (("payload", "TEXT"), ("vector", "BLOB")):
                if column not in columns:
                    conn.execute(f"ALTER TABLE chunk_meta ADD COLUMN {column} {kind}")
            # The rows incomplete() lists, indexed: finding none costs a lookup, not a table scan.
            conn.execute(f"CREATE INDEX IF NOT EXISTS chunk_meta_incomplete ON chunk_meta (chunk_id) WHERE {_INCOMPLETE}")
        except sqlite3.Error as exc:
            raise IndexUnavailable(
                f"lexical index {self.path}: {exc}; delete it and run `botkit ingest --rebuild`"
            ) from exc
        return conn

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """A read connection for one search: an idle one, or a new one (returned after use)."""
        generation = self._generation
        try:
            conn = self._idle.pop()
        except IndexError:
            if self._conn is None:
                self.conn  # noqa: B018 - creates the file and the tables first
            try:
                conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30, isolation_level=None)
            except sqlite3.Error as exc:
                raise IndexUnavailable(
                    f"lexical index {self.path}: {exc}; delete it and run `botkit ingest --rebuild`"
                ) from exc
        try:
            yield conn
        finally:
            if generation == self._generation:
                self._idle.append(conn)
            else:  # closed meanwhile
                conn.close()

    def close(self) -> None:
        """Close the connections (a later call opens them again)."""
        with self.lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            self._generation += 1
            while self._idle:
                self._idle.pop().close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (nested calls join the outer one)."""
        with self.lock:
            conn = self.conn
            if self._in_transaction:
                yield conn
                return
            try:
                conn.execute("BEGIN IMMEDIATE")
                self._in_transaction = True
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise IndexUnavailable(f"lexical index {self.path}: write failed: {exc}") from exc
            finally:
                self._in_transaction = False

    def replace(
        self, chunks: Sequence[Chunk], *, remove: Iterable[str] = (), vectors: npt.ArrayLike | None = None
    ) -> None:
        """Delete ids in ``remove`` and (re)insert ``chunks``, in one transaction.

        ``vectors``: the chunks' embeddings, one row per chunk, as the vector store holds
        them (kept so that the retriever need not read them from the vector store); None
        keeps none.
        """
        doomed = list(dict.fromkeys([*remove, *(c.id for c in chunks)]))
        blobs: Sequence[bytes | None] = [None] * len(chunks)
        if vectors is not None:
            rows = np.asarray(vectors, dtype="<f4")
            if rows.ndim != 2 or len(rows) != len(chunks):
                raise ValueError(f"{len(chunks)} chunks need as many vectors, one a row; got shape {rows.shape}")
            blobs = [row.tobytes() for row in rows]
        with self.transaction() as conn:
            _delete(conn, doomed)
            for chunk, blob in zip(chunks, blobs, strict=True):
                meta, text = _row(chunk)
                rowid = conn.execute(
                    "INSERT INTO chunk_meta (chunk_id, source, origin, kind, payload, vector) VALUES (?,?,?,?,?,?)",
                    (*meta, blob),
                ).lastrowid
                conn.execute("INSERT INTO chunk_text (rowid, title, section, body) VALUES (?,?,?,?)", (rowid, *text))

    def delete(self, ids: Iterable[str]) -> None:
        """Remove chunks by id."""
        with self.transaction() as conn:
            _delete(conn, list(ids))

    def clear(self) -> None:
        """Remove every chunk."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM chunk_text")
            conn.execute("DELETE FROM chunk_meta")

    def ids(self) -> set[str]:
        """Every indexed chunk id."""
        with self.lock:
            return {row[0] for row in self.conn.execute("SELECT chunk_id FROM chunk_meta")}

    def committed(self, ids: Sequence[str]) -> list[str]:
        """The ids in ``ids`` that this index names, in order; all of them when it names none.

        The chunk ids here and the manifest change in one transaction, so this is the set
        of chunks of the sources' current versions (the retriever's consistent view while
        a source is re-ingested). An empty index means it was built elsewhere (another
        machine ingested into a shared Chroma server): nothing is filtered then.
        """
        if not ids:
            return []
        try:
            with self._reading() as conn:
                found = {row[0] for row in _rows_of(conn, "SELECT chunk_id FROM chunk_meta WHERE chunk_id IN ({})", ids)}
                if not found and conn.execute("SELECT 1 FROM chunk_meta LIMIT 1").fetchone() is None:
                    return list(ids)
        except sqlite3.Error as exc:
            raise IndexUnavailable(f"lexical index {self.path}: read failed: {exc}") from exc
        return [cid for cid in ids if cid in found]

    def stored(self, ids: Sequence[str]) -> dict[str, StoredChunk]:
        """The chunks in ``ids`` as the vector store holds them: text, metadata and, where it
        was kept (see :meth:`replace`), the embedding.

        Written in the transaction that commits the chunk (with the manifest), so these are
        the committed versions. Ids this index does not name, or that were indexed before
        payloads were kept, are left out: read those from the vector store.
        """
        if not ids:
            return {}
        sql = "SELECT chunk_id, payload, vector FROM chunk_meta WHERE chunk_id IN ({}) AND payload IS NOT NULL"
        try:
            with self._reading() as conn:
                rows = list(_rows_of(conn, sql, ids))
        except sqlite3.Error as exc:
            raise IndexUnavailable(f"lexical index {self.path}: read failed: {exc}") from exc
        found: dict[str, StoredChunk] = {}
        for chunk_id, payload, blob in rows:
            data = json.loads(payload)
            vector = np.frombuffer(blob, dtype="<f4") if blob else None
            found[chunk_id] = StoredChunk(id=chunk_id, text=data["text"], metadata=data["metadata"], embedding=vector)
        return found

    def incomplete(self) -> list[str]:
        """Ids of chunks kept without their payload or vector (indexed by an earlier version,
        or written without vectors): :meth:`backfill` them from the vector store."""
        with self.lock:
            return [row[0] for row in self.conn.execute(f"SELECT chunk_id FROM chunk_meta WHERE {_INCOMPLETE}")]

    def backfill(self, chunks: Sequence[StoredChunk]) -> None:
        """Keep the payload and vector of ``chunks`` (read back from the vector store, with
        their embeddings) for the rows that name them."""
        rows = [
            (_payload(c.text, c.metadata), None if c.embedding is None else np.asarray(c.embedding, dtype="<f4").tobytes(),
             c.id)
            for c in chunks
        ]
        with self.transaction() as conn:
            conn.executemany("UPDATE chunk_meta SET payload = ?, vector = coalesce(?, vector) WHERE chunk_id = ?", rows)

    def optimize(self) -> None:
        """Merge the FTS index's segments into one (FTS5 ``optimize``).

        Every write transaction adds a segment that each search then reads; after an ingest
        that wrote thousands of chunks, merging them made BM25 queries at 100k chunks about
        a quarter faster. It rewrites the whole FTS index (half a second at 100k chunks), so
        ingestion calls it once, at the end of a run that changed the index.
        """
        with self.transaction() as conn:
            conn.execute("INSERT INTO chunk_text (chunk_text) VALUES ('optimize')")

    def vocabulary(self, *, max_age_s: float = VOCABULARY_MAX_AGE_S) -> Mapping[str, int]:
        """Every indexed word of a Latin-script alphabet (lowercase) → how many chunks hold it.

        Read from FTS5's own term index (``fts5vocab``), kept in memory and read again when
        the index has changed, checked at most every ``max_age_s`` seconds.
        """
        now = time.monotonic()
        cached = self._vocabulary
        if cached is not None and now - cached[0] < max_age_s:
            return cached[2]
        try:
            with self._reading() as conn:
                key = conn.execute("SELECT count(*), coalesce(max(rowid), 0) FROM chunk_meta").fetchone()
                if cached is not None and cached[1] == key:
                    self._vocabulary = (now, key, cached[2])
                    return cached[2]
                conn.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.chunk_vocab USING fts5vocab(main, chunk_text, row)")
                words = {
                    term: int(documents)
                    for term, documents in conn.execute("SELECT term, doc FROM temp.chunk_vocab")
                    if term.isascii() and term.isalpha()
                }
        except sqlite3.Error as exc:
            raise IndexUnavailable(f"lexical index {self.path}: read failed: {exc}") from exc
        self._vocabulary = (now, key, words)
        return words

    def search(self, query: str, *, k: int, filters: Mapping[str, Any] | None = None) -> list[LexicalHit]:
        """The ``k`` best BM25 matches of free-text ``query``, best first."""
        expression = match_expression(query)
        if expression is None or k <= 0:
            return []
        where, params = _filter_sql(filters)
        # Rank inside FTS5 first and join the k winners only: joining every match to
        # chunk_meta before sorting made a 100k-chunk search several times slower.
        restrict = f"AND chunk_text.rowid IN (SELECT m.rowid FROM chunk_meta AS m WHERE {where})" if where else ""
        sql = (
            f"SELECT m.chunk_id, t.score FROM (SELECT rowid, {_BM25} AS score FROM chunk_text "
            f"WHERE chunk_text MATCH ? {restrict} ORDER BY score LIMIT ?) AS t "
            "JOIN chunk_meta AS m ON m.rowid = t.rowid ORDER BY t.score"
        )
        try:
            with self._reading() as conn:
                rows = conn.execute(sql, [expression, *params, k]).fetchall()
        except sqlite3.Error as exc:
            raise IndexUnavailable(f"lexical index {self.path}: search failed: {exc}") from exc
        return [LexicalHit(chunk_id=cid, rank=i + 1, score=-float(score)) for i, (cid, score) in enumerate(rows)]


def _rows_of(conn: sqlite3.Connection, sql: str, ids: Sequence[str]) -> Iterator[tuple[Any, ...]]:
    """The rows of ``sql`` (its ``IN ({})`` filled with ``ids``), in parts of 500 ids: SQLite's
    bound-parameter limit."""
    for start in range(0, len(ids), 500):
        part = list(ids[start : start + 500])
        yield from conn.execute(sql.format(",".join("?" * len(part))), part)


def _delete(conn: sqlite3.Connection, ids: Sequence[str]) -> None:
    rows = [(cid,) for cid in ids]
    conn.executemany("DELETE FROM chunk_text WHERE rowid = (SELECT rowid FROM chunk_meta WHERE chunk_id = ?)", rows)
    conn.executemany("DELETE FROM chunk_meta WHERE chunk_id = ?", rows)


def _row(chunk: Chunk) -> tuple[tuple[str, str, str, str, str], tuple[str, str, str]]:
    """(chunk_meta values, chunk_text values) of a chunk; FAQ pairs index question and answer."""
    body = chunk.text
    if chunk.kind == "faq":
        question = str(chunk.metadata.get("question") or chunk.title)
        answer = str(chunk.metadata.get("answer") or "")
        parts = [question] + ([answer] if answer and answer not in body else []) + [body]
        body = "\n".join(p for p in parts if p)
    meta = (chunk.id, chunk.source, chunk.origin, chunk.kind, _payload(chunk.text, chunk_metadata(chunk)))
    return meta, (cjk_bigrams(chunk.title), cjk_bigrams(chunk.section), cjk_bigrams(body))


def _payload(text: str, metadata: Mapping[str, Any]) -> str:
    """A chunk's ``payload`` column: its text and flat metadata as the vector store holds them."""
    return json.dumps({"text": text, "metadata": dict(metadata)}, ensure_ascii=False)


def _filter_sql(filters: Mapping[str, Any] | None) -> tuple[str, list[Any]]:
    """SQL conditions for the retriever's filters (``source`` prefix, ``kind``, ``origin``)."""
    if not filters:
        return "", []
    clauses: list[str] = []
    params: list[Any] = []
    prefix = filters.get("source")
    if prefix:
        clauses.append("(substr(m.source, 1, ?) = ? OR substr(m.origin, 1, ?) = ?)")
        params += [len(prefix), prefix, len(prefix), prefix]
    for key in ("kind", "origin"):
        value = filters.get(key)
        if value is None:
            continue
        values = [value] if isinstance(value, str) else list(value)
        clauses.append(f"m.{key} IN ({', '.join('?' * len(values))})")
        params += values
    return " AND ".join(clauses), params
