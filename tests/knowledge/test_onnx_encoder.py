"""Queries and ingestion on ONNX Runtime: the real MiniLM exported at test time, compared with torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from knowledge.embeddings import SentenceTransformerEmbedder, bundled_model_path, load_embedder
from knowledge.errors import EmbeddingModelError
from knowledge.onnx_encoder import OnnxEncoder, cache_dir, length_groups

QUERIES = [
    "How do I reset my password?",
    "Can I get a refund on the annual plan",
    "Fehlercode E1234 beim Synchronisieren",
    "如何导出发票？",
    "x",
    "a long question " * 60,  # past the model's 256 tokens: truncated like torch truncates it
]


@pytest.fixture(scope="module")
def torch_embedder() -> SentenceTransformerEmbedder:
    return load_embedder(device="cpu", query_runtime="torch", ingest_runtime="torch")


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("botkit-cache")


def test_onnx_queries_give_the_torch_models_vectors(
    torch_embedder: SentenceTransformerEmbedder, onnx_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BOTKIT_CACHE_DIR", str(onnx_cache))
    encoder = OnnxEncoder.from_sentence_transformer(torch_embedder.model, model_id=torch_embedder.model_id)
    exported = list((onnx_cache / "onnx").glob("*.onnx"))
    assert len(exported) == 1 and not list((onnx_cache / "onnx").glob("*.tmp"))
    vectors = encoder.encode(QUERIES)
    assert vectors.dtype == np.float32 and vectors.shape == (len(QUERIES), 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.abs(vectors - torch_embedder.embed(QUERIES)).max() < 1e-4
    # One at a time (no padding) equals the batch (padding masked out).
    assert np.abs(encoder.encode([QUERIES[0]])[0] - vectors[0]).max() < 1e-5
    # Loading again reuses the exported file.
    modified = exported[0].stat().st_mtime_ns
    OnnxEncoder.from_sentence_transformer(torch_embedder.model, model_id=torch_embedder.model_id)
    assert exported[0].stat().st_mtime_ns == modified


def test_the_embedder_runs_queries_and_ingestion_on_the_runtimes_asked_for(
    torch_embedder: SentenceTransformerEmbedder, onnx_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BOTKIT_CACHE_DIR", str(onnx_cache))
    onnx_queries = load_embedder(device="cpu", query_runtime="onnx", ingest_runtime="torch")
    assert (onnx_queries.query_runtime, onnx_queries.ingest_runtime) == ("onnx", "torch")
    assert (torch_embedder.query_runtime, torch_embedder.ingest_runtime) == ("torch", "torch")
    assert onnx_queries.model is torch_embedder.model  # one copy of the weights
    for text in QUERIES[:3]:
        assert np.abs(onnx_queries.embed_query(text) - torch_embedder.embed_query(text)).max() < 1e-4
    assert np.array_equal(onnx_queries.embed(["ingested text"]), torch_embedder.embed(["ingested text"]))

    both = load_embedder(device="cpu", query_runtime="onnx", ingest_runtime="onnx")
    assert both.ingest_runtime == "onnx" and both.document_encoder is both.query_encoder  # exported once
    chunks = [QUERIES[5], "ingested text", *QUERIES[:4], "Descaling removes limescale. " * 30]  # lengths mixed
    vectors = both.embed(chunks)
    assert vectors.dtype == np.float32 and vectors.shape == (len(chunks), 384)
    assert np.abs(vectors - torch_embedder.embed(chunks)).max() < 1e-4  # each row its own text's vector
    onnx_chunks = load_embedder(device="cpu", query_runtime="torch", ingest_runtime="onnx")
    assert (onnx_chunks.query_runtime, onnx_chunks.ingest_runtime) == ("torch", "onnx")
    assert np.array_equal(onnx_chunks.embed_query(QUERIES[0]), torch_embedder.embed_query(QUERIES[0]))  # queries on torch
    defaults = load_embedder(device="cpu")
    assert (defaults.query_runtime, defaults.ingest_runtime) == ("onnx", "onnx")  # auto on CPU


def test_models_onnx_cannot_reproduce_stay_on_torch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sentence_transformers import SentenceTransformer, models

    monkeypatch.setenv("BOTKIT_CACHE_DIR", str(tmp_path / "cache"))
    encoder = models.Transformer(str(bundled_model_path()))
    dimension = getattr(encoder, "get_embedding_dimension", None) or encoder.get_word_embedding_dimension
    cls_pooling = models.Pooling(dimension(), pooling_mode="cls")
    model = SentenceTransformer(modules=[encoder, cls_pooling], device="cpu")
    folder = tmp_path / "cls-model"
    model.save(str(folder))
    with pytest.raises(EmbeddingModelError, match="mean pooling only.*query_runtime: torch"):
        load_embedder(str(folder), device="cpu", query_runtime="onnx")
    with pytest.raises(EmbeddingModelError, match="knowledge.ingest_runtime is onnx.*ingest_runtime: torch"):
        load_embedder(str(folder), device="cpu", query_runtime="torch", ingest_runtime="onnx")
    fallback = load_embedder(str(folder), device="cpu", query_runtime="auto")
    assert fallback.query_runtime == "torch" and fallback.ingest_runtime == "torch"
    assert fallback.embed(["still ingests"]).shape == (1, 384)
    assert fallback.embed_query("still answers").shape == (384,)
    assert not (tmp_path / "cache").exists()  # nothing exported


def test_an_unknown_runtime_is_refused() -> None:
    with pytest.raises(EmbeddingModelError, match="unknown query runtime 'tensorrt'"):
        load_embedder(device="cpu", query_runtime="tensorrt")  # type: ignore[arg-type]
    with pytest.raises(EmbeddingModelError, match="unknown ingest runtime 'openvino'"):
        load_embedder(device="cpu", ingest_runtime="openvino")  # type: ignore[arg-type]


def test_the_cache_folder_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BOTKIT_CACHE_DIR", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c" / "onnx"
    monkeypatch.delenv("BOTKIT_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "botkit" / "onnx"


def test_an_unwritable_cache_or_a_damaged_export_falls_back_to_torch(
    torch_embedder: SentenceTransformerEmbedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be", encoding="utf-8")
    monkeypatch.setenv("BOTKIT_CACHE_DIR", str(blocker))
    with pytest.raises(EmbeddingModelError, match="BOTKIT_CACHE_DIR"):
        OnnxEncoder.from_sentence_transformer(torch_embedder.model, model_id=torch_embedder.model_id)

    cache = tmp_path / "cache"
    monkeypatch.setenv("BOTKIT_CACHE_DIR", str(cache))
    OnnxEncoder.from_sentence_transformer(torch_embedder.model, model_id=torch_embedder.model_id)
    (exported,) = (cache / "onnx").glob("*.onnx")
    exported.write_bytes(b"not an onnx model")
    with pytest.raises(EmbeddingModelError, match="cannot run the ONNX export"):
        OnnxEncoder.from_sentence_transformer(torch_embedder.model, model_id=torch_embedder.model_id)
    assert not exported.exists()  # dropped: the next load exports it again
    again = OnnxEncoder.from_sentence_transformer(torch_embedder.model, model_id=torch_embedder.model_id)
    assert again.encode(["works again"]).shape == (1, 384)


def test_length_groups_cover_every_row_once_and_split_only_when_padding_costs_more_than_a_call() -> None:
    lengths = np.array([30, 5, 6, 29, 7, 31, 5])
    groups = length_groups(lengths, call_cost=24)
    assert sorted(int(i) for g in groups for i in g) == list(range(len(lengths)))
    assert [sorted(lengths[g].tolist()) for g in groups] == [[5, 5, 6, 7], [29, 30, 31]]
    assert len(length_groups(lengths, call_cost=10_000)) == 1  # a call dearer than any padding: one call
    assert len(length_groups(np.array([12] * 20))) == 1  # nothing to gain from splitting equal lengths
    assert [g.tolist() for g in length_groups(np.array([9]))] == [[0]]
    assert length_groups(np.array([], dtype=np.int64))[0].size == 0


def test_a_batch_of_mixed_lengths_runs_in_groups_and_gives_each_texts_own_vector(
    torch_embedder: SentenceTransformerEmbedder, onnx_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BOTKIT_CACHE_DIR", str(onnx_cache))
    encoder = OnnxEncoder.from_sentence_transformer(torch_embedder.model, model_id=torch_embedder.model_id)
    calls: list[int] = []
    run = encoder._session.run

    def counting(outputs: object, feed: dict[str, np.ndarray]) -> object:
        calls.append(next(iter(feed.values())).shape[1])
        return run(outputs, feed)

    monkeypatch.setattr(encoder._session, "run", counting, raising=False)
    texts = ["short", "a question of a good many more words than the others in this batch " * 4, "tiny", "small one"]
    vectors = encoder.encode(texts)
    assert len(calls) == 2 and min(calls) < 8  # the short ones were not padded to the long one
    for text, vector in zip(texts, vectors):
        assert np.abs(encoder.encode([text])[0] - vector).max() < 1e-5
    assert np.abs(vectors - torch_embedder.embed(texts)).max() < 1e-4
    assert encoder.encode([]).shape == (0, 384)


def test_a_model_built_here_loads_by_path_and_runs_on_both_runtimes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not only MiniLM: another BERT (own vocabulary, width, depth) is exported and checked too."""
    from tests.helpers.tiny_embedder import build_tiny_embedder

    monkeypatch.setenv("BOTKIT_CACHE_DIR", str(tmp_path / "cache"))
    folder = build_tiny_embedder(tmp_path / "tiny-bert")
    on_torch = load_embedder(str(folder), device="cpu", query_runtime="torch", ingest_runtime="torch")
    on_onnx = load_embedder(str(folder), device="cpu", query_runtime="onnx", ingest_runtime="onnx")
    assert on_torch.dimension == on_onnx.dimension == 32
    texts = ["To reset your password, open the sign-in page.", "refunds", "Orders ship the same day. " * 20]
    assert np.abs(on_onnx.embed(texts) - on_torch.embed(texts)).max() < 1e-4
    assert np.abs(on_onnx.embed_query(texts[0]) - on_torch.embed_query(texts[0])).max() < 1e-4
    assert list(cache_dir().glob("*.onnx"))  # exported under BOTKIT_CACHE_DIR
