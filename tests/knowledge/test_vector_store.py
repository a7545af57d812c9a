"""The Chroma vector store: embedded folder and a real `chroma run` server."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
from fixtures_index import chroma_server  # noqa: F401  (fixture)

from knowledge.errors import EmbeddingModelError, IndexUnavailable
from knowledge.store import VectorStore
from knowledge.types import Chunk

DIM = 8


def _chunk(i: int, source: str = "a.md", kind: str = "article", **metadata: object) -> Chunk:
    return Chunk(
        id=f"id-{i}", source=source, origin=source.split("#")[0], title=f"Title {i}", section="S", text=f"text {i}",
        embed_text=f"text {i}", ordinal=i, kind=kind, metadata=dict(metadata),  # type: ignore[arg-type]
    )


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _exercise(store: VectorStore) -> None:
    chunks = [_chunk(i) for i in range(5)] + [_chunk(5, "faq.csv#q", "faq", question="Q?", answer="A.")]
    vectors = _vectors(6)
    store.upsert(chunks, vectors)
    assert store.count() == 6 and store.ids() == {c.id for c in chunks}

    hits = store.query(vectors[2], k=3)
    assert hits[0].id == "id-2" and hits[0].similarity == pytest.approx(1.0, abs=1e-4)
    assert [h.similarity for h in hits] == sorted((h.similarity for h in hits), reverse=True)

    faq = store.query(vectors[5], k=2, where={"kind": "faq"})
    assert [h.id for h in faq] == ["id-5"]
    assert faq[0].extra == {"question": "Q?", "answer": "A."} and faq[0].field("origin") == "faq.csv"

    got = store.get(["id-4", "missing", "id-1"], with_embeddings=True)
    assert [g.id for g in got] == ["id-4", "id-1"]
    assert np.allclose(got[0].embedding, vectors[4], atol=1e-5)
    only_vectors = store.embeddings(["id-4", "missing", "id-1"])
    assert set(only_vectors) == {"id-4", "id-1"} and np.allclose(only_vectors["id-1"], vectors[1], atol=1e-5)
    assert store.embeddings([]) == {}

    store.upsert([_chunk(1)], vectors[:1])  # upsert replaces
    assert store.count() == 6
    store.delete(["id-0", "id-1", "never-existed"])
    assert store.ids() == {"id-2", "id-3", "id-4", "id-5"}


def test_embedded_store_add_query_delete(tmp_path: Path) -> None:
    store = VectorStore.open(model_id="test-model", dimension=DIM, path=tmp_path / "chroma")
    _exercise(store)
    reopened = VectorStore.open(model_id="test-model", dimension=DIM, path=tmp_path / "chroma")
    assert reopened.count() == 4 and reopened.model_id == "test-model" and reopened.dimension == DIM


def test_opening_with_another_model_is_an_error_naming_both(tmp_path: Path) -> None:
    VectorStore.open(model_id="model-a", dimension=DIM, path=tmp_path / "chroma").upsert([_chunk(0)], _vectors(1))
    with pytest.raises(EmbeddingModelError) as info:
        VectorStore.open(model_id="model-b", dimension=DIM, path=tmp_path / "chroma")
    message = str(info.value)
    assert "model-a" in message and "model-b" in message and "botkit ingest --rebuild" in message
    rebuilt = VectorStore.open(model_id="model-b", dimension=DIM, path=tmp_path / "chroma", rebuild=True)
    assert rebuilt.count() == 0 and rebuilt.model_id == "model-b"


def test_collection_is_cosine_and_has_no_embedding_function(tmp_path: Path) -> None:
    store = VectorStore.open(model_id="m", dimension=DIM, path=tmp_path / "chroma")
    assert store._collection.metadata["hnsw:space"] == "cosine"
    assert store._collection._embedding_function is None


def test_open_existing_returns_none_before_the_first_ingest(tmp_path: Path) -> None:
    assert VectorStore.open_existing(path=tmp_path / "nothing") is None


def test_unreachable_server_is_index_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(IndexUnavailable, match="chroma run"):
        VectorStore.open(model_id="m", dimension=DIM, url=f"http://127.0.0.1:{port}")


@pytest.mark.slow
def test_http_client_against_a_real_chroma_server(chroma_server: str) -> None:
    store = VectorStore.open(model_id="test-model", dimension=DIM, url=chroma_server, collection="http-test")
    assert store.location == chroma_server
    _exercise(store)
    with pytest.raises(EmbeddingModelError):
        VectorStore.open(model_id="other", dimension=DIM, url=chroma_server, collection="http-test")
    existing = VectorStore.open_existing(url=chroma_server, collection="http-test")
    assert existing is not None and existing.count() == 4
