"""The transformers backend on a CUDA GPU: placement, dtype, streaming, deadline, sharing.

These tests need an NVIDIA GPU and are skipped without one (CI machines have none).
They use only the backend layer (no store, no index), so they also run on a GPU host
that has torch and transformers but not botkit's other dependencies::

    python -m pytest --noconftest -p no:cacheprovider tests/gpu -q

The CPU path of the same backend is covered by tests/botkit/test_backend_transformers.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():  # pragma: no cover - depends on the machine
    pytest.skip("needs a CUDA GPU (torch.cuda.is_available() is False)", allow_module_level=True)

from botkit.backends import _hf_models  # noqa: E402
from botkit.backends.base import ChatMessage, Done, Prompt, TextDelta  # noqa: E402
from botkit.backends.registry import create_backend  # noqa: E402
from botkit.backends.transformers_backend import TransformersBackend  # noqa: E402
from botkit.config import BotConfig  # noqa: E402
from botkit.errors import BackendTimeout  # noqa: E402
from tests.helpers.tiny_model import build_tiny_model  # noqa: E402

CONTEXT = 512


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama-cuda"), context=CONTEXT)


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    _hf_models.clear_cache()
    yield
    _hf_models.clear_cache()


def auto_config(**transformers: object) -> BotConfig:
    """No device set: the backend must pick the GPU by itself."""
    return BotConfig.model_validate({"transformers": {"max_new_tokens": 8, **transformers}})


def prompt(question: str = "How do I reset my password?", max_tokens: int | None = None) -> Prompt:
    return Prompt([ChatMessage("system", "You are the support assistant."), ChatMessage("user", question)],
                  question, [], max_tokens=max_tokens)


async def test_default_device_is_the_gpu_in_half_precision(tiny_model: Path) -> None:
    backend = create_backend(f"transformers:{tiny_model}", auto_config())
    assert isinstance(backend, TransformersBackend)
    loaded = await backend.load()
    assert loaded.device == "cuda"
    parameter = next(loaded.model.parameters())
    assert parameter.device.type == "cuda"
    assert parameter.dtype == (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    assert _hf_models.loaded_models() == [(str(tiny_model.resolve()), "cuda")]


async def test_generate_and_stream_on_the_gpu(tiny_model: Path) -> None:
    backend = create_backend(f"transformers:{tiny_model}", auto_config())
    completion = await backend.generate(prompt(), timeout=120)
    assert completion.text and completion.usage.completion_tokens == 8
    events = [e async for e in backend.stream(prompt(max_tokens=6), timeout=120)]
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    done = events[-1]
    assert isinstance(done, Done) and deltas
    assert "".join(deltas) == done.completion.text
    assert done.completion.usage.completion_tokens == 6


async def test_sampling_on_the_gpu(tiny_model: Path) -> None:
    backend = create_backend(f"transformers:{tiny_model}", auto_config(temperature=0.7))
    completion = await backend.generate(prompt(), timeout=120)
    assert completion.usage.completion_tokens == 8


async def test_concurrent_turns_share_one_model_and_all_finish(tiny_model: Path) -> None:
    backends = [TransformersBackend(model=str(tiny_model), config=auto_config()) for _ in range(4)]
    completions = await asyncio.gather(*(b.generate(prompt(f"question {i}"), timeout=120)
                                         for i, b in enumerate(backends)))
    assert all(c.usage.completion_tokens == 8 for c in completions)
    assert len({id(b._loaded) for b in backends}) == 1
    assert _hf_models.loaded_models() == [(str(tiny_model.resolve()), "cuda")]


async def test_deadline_stops_a_gpu_generation_and_frees_the_model(tiny_model: Path) -> None:
    backend = TransformersBackend(model=str(tiny_model), config=auto_config())
    await backend.load()
    started = time.monotonic()
    with pytest.raises(BackendTimeout):
        await backend.generate(prompt(max_tokens=256), timeout=0.02)
    assert time.monotonic() - started < 0.02 + 1.0
    assert (await backend.generate(prompt(), timeout=120)).usage.completion_tokens == 8


async def test_explicit_cpu_device_is_honoured_on_a_gpu_host(tiny_model: Path) -> None:
    backend = TransformersBackend(model=str(tiny_model), config=auto_config(device="cpu"))
    loaded = await backend.load()
    assert loaded.device == "cpu" and next(loaded.model.parameters()).dtype == torch.float32
    assert (await backend.generate(prompt(), timeout=120)).usage.completion_tokens == 8
