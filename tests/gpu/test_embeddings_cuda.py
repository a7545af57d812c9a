"""Embeddings on a CUDA GPU: the device picked, the runtimes that follow it, and vectors
equal to the CPU's.

Needs an NVIDIA GPU; skipped without one (CI machines have none). The model is a tiny BERT
built at test time (:mod:`tests.helpers.tiny_embedder`), so no weights travel. Like the
backend tests beside it, this module needs only torch, sentence-transformers, onnxruntime
and pydantic::

    python -m pytest --noconftest -p no:cacheprovider tests/gpu -q

The CPU side of the same code is covered by tests/knowledge/test_onnx_encoder.py.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():  # pragma: no cover - depends on the machine
    pytest.skip("needs a CUDA GPU (torch.cuda.is_available() is False)", allow_module_level=True)

from knowledge.embeddings import load_embedder  # noqa: E402
from tests.helpers.tiny_embedder import build_tiny_embedder  # noqa: E402

TEXTS = [
    "To reset your password, open the sign-in page and click Forgot password.",
    "refund",
    "Orders placed before 2pm ship the same day. " * 12,  # past the model's maximum length
    *(f"question number {i} about shipping and refunds" for i in range(40)),
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(build_tiny_embedder(tmp_path_factory.mktemp("tiny-bert-cuda") / "model"))


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOTKIT_CACHE_DIR", str(tmp_path / "cache"))


def cpu_reference(tiny: str) -> np.ndarray:
    return load_embedder(tiny, device="cpu", query_runtime="torch", ingest_runtime="torch").embed(TEXTS)


def test_the_default_device_is_the_gpu_and_both_runtimes_stay_on_torch(tiny: str) -> None:
    gpu = load_embedder(tiny)
    assert gpu.device.startswith("cuda")
    assert next(gpu.model.parameters()).device.type == "cuda"
    assert (gpu.query_runtime, gpu.ingest_runtime) == ("torch", "torch")  # auto: ONNX only on CPU


def test_gpu_vectors_equal_the_cpus(tiny: str) -> None:
    vectors = load_embedder(tiny).embed(TEXTS)
    assert vectors.dtype == np.float32 and vectors.shape == (len(TEXTS), 32)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.abs(vectors - cpu_reference(tiny)).max() < 1e-4


def test_concurrent_queries_on_the_gpu_each_get_their_own_vector(tiny: str) -> None:
    gpu = load_embedder(tiny)
    with ThreadPoolExecutor(16) as pool:
        vectors = np.stack(list(pool.map(gpu.embed_query, TEXTS)))
    assert np.abs(vectors - cpu_reference(tiny)).max() < 1e-4


def test_onnx_queries_beside_a_model_on_the_gpu(tiny: str) -> None:
    """query_runtime: onnx on a GPU host: the model is traced where it lives, the export runs
    on the CPU and gives the GPU model's vectors; chunks stay on the GPU."""
    mixed = load_embedder(tiny, device="cuda", query_runtime="onnx", ingest_runtime="torch")
    assert (mixed.query_runtime, mixed.ingest_runtime) == ("onnx", "torch")
    assert next(mixed.model.parameters()).device.type == "cuda"
    queries = mixed.embed_queries(TEXTS)
    assert np.abs(queries - cpu_reference(tiny)).max() < 1e-4
    assert np.abs(mixed.embed(TEXTS) - queries).max() < 1e-4
