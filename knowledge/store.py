"""The vector store: one Chroma collection in cosine space.

Embedded (``chromadb.PersistentClient`` on a local folder) by default, a Chroma server
(``chromadb.HttpClient``) when ``knowledge.chroma_url`` is set. Vectors are always passed
in explicitly: the collection has no embedding function, so Chroma never downloads its
default ONNX model.

The collection's metadata records the embedding model id and dimension; opening it with
another model raises :class:`EmbeddingModelError`. Chroma failures become
:class:`IndexUnavailable`. chromadb is imported when a store is opened, not at import time.

Concurrent reads (:meth:`VectorStore.query`, :meth:`VectorStore.get`) are micro-batched
(:mod:`knowledge.batching`): a Chroma call costs about the same for one query vector or
sixteen, so 16 turns retrieving at once make two calls of each instead of 16.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from knowledge.batching import Batcher
from knowledge.errors import EmbeddingModelError, IndexUnavailable, KnowledgeConfigError
from knowledge.types import Chunk

MODEL_KEY = "botkit:embedding_model"
DIMENSION_KEY = "botkit:embedding_dimension"
REBUILD_HINT = "re-ingest with `botkit ingest --rebuild` or set knowledge.embedding_model"


@dataclass(frozen=True)
class StoredChunk:
    """A chunk as read back from the store, with its similarity to the query when queried."""

    id: str
    text: str
    metadata: dict[str, Any]
    similarity: float | None = None
    embedding: np.ndarray | None = None

    def field(self, key: str, default: str = "") -> str:
        """A string metadata field."""
        value = self.metadata.get(key, default)
        return default if value is None else str(value)

    @property
    def extra(self) -> dict[str, Any]:
        """The chunk's own metadata dict (stored as JSON)."""
        raw = self.metadata.get("meta")
        return json.loads(raw) if isinstance(raw, str) and raw else {}


def chunk_metadata(chunk: Chunk) -> dict[str, Any]:
    """The flat Chroma metadata of a chunk (Chroma accepts scalars only)."""
    return {
        "source": chunk.source,
        "origin": chunk.origin,
        "title": chunk.title,
        "section": chunk.section,
        "kind": chunk.kind,
        "url": chunk.url or "",
        "ordinal": chunk.ordinal,
        "meta": json.dumps(chunk.metadata, ensure_ascii=False, default=str) if chunk.metadata else "",
    }


@contextmanager
def _chroma_errors(action: str) -> Iterator[None]:
    try:
        yield
    except (EmbeddingModelError, IndexUnavailable, KnowledgeConfigError):
        raise
    except Exception as exc:  # chromadb raises many unrelated types: translate all at this boundary
        raise IndexUnavailable(f"vector store: cannot {action}: {exc.__class__.__name__}: {exc}") from exc


class VectorStore:
    """A Chroma collection holding chunk vectors. Open it with :meth:`open`."""

    def __init__(self, *, client: Any, collection: Any, name: str, location: str) -> None:
        self._client = client
        self._collection = collection
        self.name = name
        self.location = location
        metadata = collection.metadata or {}
        self.model_id = str(metadata.get(MODEL_KEY, ""))
        self.dimension = int(metadata.get(DIMENSION_KEY, 0))
        self._max_batch = _max_batch(client)
        self._queries: Batcher[VectorQuery, list[StoredChunk]] = Batcher(self.query_many)
        self._gets: Batcher[_Get, list[StoredChunk]] = Batcher(self._get_batch)

    @classmethod
    def open(
        cls,
        *,
        model_id: str,
        dimension: int,
        path: Path | None = None,
        url: str | None = None,
        collection: str = "botkit",
        rebuild: bool = False,
    ) -> VectorStore:
        """Open (creating when absent) the collection, checking it was built with ``model_id``.

        ``url`` (a Chroma server) wins over ``path`` (an embedded folder). ``rebuild`` drops
        the collection first, so a model change can be applied.
        """
        client, location = _client(path=path, url=url)
        metadata = {"hnsw:space": "cosine", MODEL_KEY: model_id, DIMENSION_KEY: dimension}
        with _chroma_errors(f"open collection {collection!r} at {location}"):
            if rebuild:
                existing = {getattr(c, "name", c) for c in client.list_collections()}
                if collection in existing:
                    client.delete_collection(collection)
            coll = client.get_or_create_collection(collection, metadata=metadata, embedding_function=None)
        built_with = coll.metadata.get(MODEL_KEY) if coll.metadata else None
        built_dim = coll.metadata.get(DIMENSION_KEY) if coll.metadata else None
        if built_with != model_id or (built_dim is not None and int(built_dim) != dimension):
            raise EmbeddingModelError(
                f"index {collection!r} at {location} was built with {built_with or 'an unknown model'} "
                f"(dimension {built_dim}), configured {model_id} (dimension {dimension}): {REBUILD_HINT}"
            )
        return cls(client=client, collection=coll, name=collection, location=location)

    @classmethod
    def open_existing(cls, *, path: Path | None = None, url: str | None = None, collection: str = "botkit") -> VectorStore | None:
        """Open the collection without checking its model (for stats); None when it does not exist."""
        if url is None and (path is None or not path.exists()):
            return None
        client, location = _client(path=path, url=url)
        with _chroma_errors(f"open collection {collection!r} at {location}"):
            if collection not in {getattr(c, "name", c) for c in client.list_collections()}:
                return None
            coll = client.get_collection(collection, embedding_function=None)
        return cls(client=client, collection=coll, name=collection, location=location)

    # -- writing ---------------------------------------------------------------------

    def upsert(self, chunks: Sequence[Chunk], embeddings: np.ndarray) -> None:
        """Insert or replace ``chunks`` with their ``embeddings`` (same order)."""
        if len(chunks) != len(embeddings):
            raise ValueError(f"{len(chunks)} chunks but {len(embeddings)} embeddings")
        for start in range(0, len(chunks), self._max_batch):
            part = chunks[start : start + self._max_batch]
            with _chroma_errors("write chunks"):
                self._collection.upsert(
                    ids=[c.id for c in part],
                    embeddings=np.asarray(embeddings[start : start + self._max_batch], dtype=np.float32),
                    documents=[c.text for c in part],
                    metadatas=[chunk_metadata(c) for c in part],
                )

    def delete(self, ids: Sequence[str]) -> None:
        """Remove chunks by id (unknown ids are ignored)."""
        ids = list(ids)
        for start in range(0, len(ids), self._max_batch):
            with _chroma_errors("delete chunks"):
                self._collection.delete(ids=ids[start : start + self._max_batch])

    # -- reading ---------------------------------------------------------------------

    def count(self) -> int:
        """Number of chunks in the collection."""
        with _chroma_errors("count chunks"):
            return int(self._collection.count())

    def ids(self) -> set[str]:
        """Every chunk id in the collection."""
        found: set[str] = set()
        total = self.count()
        page = max(self._max_batch, 1000)
        for offset in range(0, total, page):
            with _chroma_errors("list chunk ids"):
                found.update(self._collection.get(include=[], limit=page, offset=offset)["ids"])
        return found

    def get(self, ids: Sequence[str], *, with_embeddings: bool = False) -> list[StoredChunk]:
        """The stored chunks with these ids (missing ids are skipped), in the given order.

        Concurrent calls are read with one Chroma call (see :mod:`knowledge.batching`).
        """
        if not ids:
            return []
        return self._gets.call(_Get(tuple(ids), with_embeddings))

    def _get_batch(self, requests: Sequence[_Get]) -> list[list[StoredChunk]]:
        """One Chroma read per ``with_embeddings`` value for the union of the requests' ids."""
        found: dict[bool, dict[str, StoredChunk]] = {}
        for with_embeddings in {r.with_embeddings for r in requests}:
            wanted = list(dict.fromkeys(cid for r in requests if r.with_embeddings == with_embeddings for cid in r.ids))
            found[with_embeddings] = self._read(wanted, with_embeddings=with_embeddings)
        return [[found[r.with_embeddings][cid] for cid in r.ids if cid in found[r.with_embeddings]] for r in requests]

    def _read(self, ids: Sequence[str], *, with_embeddings: bool) -> dict[str, StoredChunk]:
        include = ["documents", "metadatas"] + (["embeddings"] if with_embeddings else [])
        by_id: dict[str, StoredChunk] = {}
        for start in range(0, len(ids), self._max_batch):
            with _chroma_errors("read chunks"):
                result = self._collection.get(ids=list(ids[start : start + self._max_batch]), include=include)
            vectors = result.get("embeddings") if with_embeddings else None
            for i, cid in enumerate(result["ids"]):
                by_id[cid] = StoredChunk(
                    id=cid,
                    text=result["documents"][i] or "",
                    metadata=dict(result["metadatas"][i] or {}),
                    embedding=None if vectors is None else np.asarray(vectors[i], dtype=np.float32),
                )
        return by_id

    def embeddings(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored vectors of these ids (missing ids are skipped); cheaper than :meth:`get`."""
        if not ids:
            return {}
        with _chroma_errors("read vectors"):
            result = self._collection.get(ids=list(ids), include=["embeddings"])
        vectors = result.get("embeddings")
        if vectors is None:
            return {}
        return {cid: np.asarray(vectors[i], dtype=np.float32) for i, cid in enumerate(result["ids"])}

    def query(
        self, vector: np.ndarray, *, k: int, where: Mapping[str, Any] | None = None, with_data: bool = True
    ) -> list[StoredChunk]:
        """The ``k`` nearest chunks to ``vector``, best first, with cosine similarity.

        ``with_data=False`` reads ids and similarities only (text and metadata left empty),
        which is several times cheaper; read the winners with :meth:`get`. Concurrent
        queries with the same ``k``, ``where`` and ``with_data`` go to Chroma as one query
        of several vectors (see :mod:`knowledge.batching`).
        """
        if k <= 0:
            return []
        return self._queries.call(VectorQuery(np.asarray(vector, dtype=np.float32), k=k, where=where, with_data=with_data))

    def query_many(self, queries: Sequence[VectorQuery]) -> list[list[StoredChunk]]:
        """:meth:`query` for each of ``queries``, in order, in one Chroma query per distinct
        (``k``, ``where``, ``with_data``): the batch behind concurrent :meth:`query` calls."""
        results: list[list[StoredChunk]] = [[] for _ in queries]
        groups: dict[tuple[int, str, bool], list[int]] = {}
        for index, q in enumerate(queries):
            if q.k > 0:
                where = json.dumps(dict(q.where), sort_keys=True, default=str) if q.where else ""
                groups.setdefault((q.k, where, q.with_data), []).append(index)
        for (k, _, with_data), members in groups.items():
            where = queries[members[0]].where
            with _chroma_errors("search"):
                result = self._collection.query(
                    query_embeddings=[np.asarray(queries[i].vector, dtype=np.float32) for i in members],
                    n_results=k,
                    where=dict(where) if where else None,
                    include=["documents", "metadatas", "distances"] if with_data else ["distances"],
                )
            documents = result.get("documents") if with_data else None
            metadatas = result.get("metadatas") if with_data else None
            for row, index in enumerate(members):
                results[index] = [
                    StoredChunk(
                        id=cid,
                        text=(documents[row][i] or "") if documents else "",
                        metadata=dict(metadatas[row][i] or {}) if metadatas else {},
                        similarity=1.0 - float(result["distances"][row][i]),
                    )
                    for i, cid in enumerate(result["ids"][row])
                ]
        return results


@dataclass(frozen=True)
class VectorQuery:
    """One nearest-neighbour search of :meth:`VectorStore.query_many` (its arguments as in
    :meth:`VectorStore.query`)."""

    vector: np.ndarray
    k: int
    where: Mapping[str, Any] | None = None
    with_data: bool = True


@dataclass(frozen=True)
class _Get:
    """One :meth:`VectorStore.get` waiting to be batched."""

    ids: tuple[str, ...]
    with_embeddings: bool


def _client(*, path: Path | None, url: str | None) -> tuple[Any, str]:
    try:
        import chromadb
        from chromadb.config import Settings
    except ImportError as exc:  # pragma: no cover - a dependency of botkit
        raise IndexUnavailable("chromadb is not installed: run `pip install chromadb`") from exc
    settings = Settings(anonymized_telemetry=False)
    if url:
        parsed = urlparse(url if "://" in url else f"http://{url}")
        if not parsed.hostname:
            raise KnowledgeConfigError(f"knowledge.chroma_url {url!r} is not a URL like http://127.0.0.1:8001")
        ssl = parsed.scheme == "https"
        port = parsed.port or (443 if ssl else 8000)
        with _chroma_errors(f"reach the Chroma server at {url} (is `chroma run` up?)"):
            client = chromadb.HttpClient(host=parsed.hostname, port=port, ssl=ssl, settings=settings)
            _bound_timeouts(client)
            client.heartbeat()
        return client, url
    if path is None:
        raise KnowledgeConfigError("no vector store location: set knowledge.chroma_path or knowledge.chroma_url")
    with _chroma_errors(f"open the Chroma folder {path}"):
        path.mkdir(parents=True, exist_ok=True)
        client = chromadb.PersistentClient(path=str(path), settings=settings)
    return client, str(path)


CHROMA_CONNECT_TIMEOUT_S = 2.0
CHROMA_TIMEOUT_S = 15.0


def _bound_timeouts(client: Any) -> None:
    """chromadb's HTTP client waits forever (``timeout=None``): a frozen Chroma server would
    hang every turn. Bound it: connecting 2 s (a dead host fails fast), any read 15 s."""
    session = getattr(getattr(client, "_server", None), "_session", None)
    if session is not None and hasattr(session, "timeout"):
        import httpx

        session.timeout = httpx.Timeout(CHROMA_TIMEOUT_S, connect=CHROMA_CONNECT_TIMEOUT_S)


def _max_batch(client: Any) -> int:
    getter = getattr(client, "get_max_batch_size", None)
    try:
        return max(1, min(int(getter()), 5000)) if callable(getter) else 5000
    except Exception:  # noqa: BLE001 - an old server without the endpoint
        return 5000
