"""Loading Hugging Face causal LMs once per (path, device), shared by backend instances.

Internal to the transformers backend. Loading is synchronous and meant to run in a
worker thread (``asyncio.to_thread``); a per-key lock makes concurrent first calls load
once. ``torch``/``transformers`` are imported here, never by ``import botkit``.

Every generation of a loaded model runs on that model's one long-lived thread
(:class:`GenerationWorker`), one at a time. A fresh thread per reply would be simple, but
on a GPU it is slow: cuDNN and cuBLAS keep their handles and attention execution plans
per thread, so each new thread rebuilt them, and a 200M-parameter Llama on an H200 ran
at 19 tokens/s from fresh threads against 126 from one reused thread
(``benchmarks/bench_transformers.py``).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)


class GenerationWorker:
    """One daemon thread that runs submitted jobs in order, started on first use.

    Jobs must not raise (the transformers backend hands its errors to the waiting
    coroutine itself); an exception that escapes is logged and the thread goes on.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, job: Callable[[], None]) -> None:
        """Queue ``job``; it runs after the jobs submitted before it."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()
            self._jobs.put(job)

    def stop(self) -> None:
        """Let the thread end once the queued jobs are done."""
        with self._lock:
            if self._thread is not None:
                self._jobs.put(None)
                self._thread = None

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                job()
            except Exception:  # pragma: no cover - jobs report their own errors
                logger.exception("generation job failed on %s", self.name)

from botkit.errors import BackendError, ConfigError


@dataclass
class LoadedModel:
    """A tokenizer and model ready on ``device``; ``worker`` runs its generations in turn."""

    source: str
    device: str
    tokenizer: Any
    model: Any
    context: int
    worker: GenerationWorker = field(init=False)

    def __post_init__(self) -> None:
        self.worker = GenerationWorker(f"botkit-generate-{self.source.rsplit('/', 1)[-1]}-{self.device}")


_models: dict[tuple[str, str], LoadedModel] = {}
_tokenizers: dict[str, Any] = {}
_key_locks: dict[tuple[str, str], threading.Lock] = {}
_lock = threading.Lock()


def _import() -> tuple[Any, Any]:
    try:
        import torch
        import transformers
    except ImportError as exc:  # pragma: no cover - both are core dependencies
        raise ConfigError("the transformers backend needs torch and transformers", hint="pip install botkit") from exc
    return torch, transformers


def default_device(requested: str | None) -> str:
    """``requested``, or cuda when available, else cpu."""
    if requested:
        return requested
    torch, _ = _import()
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_tokenizer(source: str) -> Any:
    """The tokenizer of ``source`` (cached; shared with the loaded model when there is one)."""
    with _lock:
        cached = _tokenizers.get(source)
    if cached is not None:
        return cached
    _, transformers = _import()
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise BackendError(f"transformers:{source}: cannot load the tokenizer: {exc}") from exc
    with _lock:
        return _tokenizers.setdefault(source, tokenizer)


def load_model(source: str, device: str) -> LoadedModel:
    """Load ``source`` onto ``device`` once; later calls return the same object.

    GPU: bf16 where supported, else fp16; CPU: fp32. Files are only read locally.
    """
    key = (source, device)
    with _lock:
        loaded = _models.get(key)
        if loaded is not None:
            return loaded
        key_lock = _key_locks.setdefault(key, threading.Lock())
    with key_lock:
        with _lock:
            if key in _models:
                return _models[key]
        torch, transformers = _import()
        if device.startswith("cuda"):
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            dtype = torch.float32
        version = tuple(int(p) for p in transformers.__version__.split(".")[:2] if p.isdigit())
        dtype_arg = "dtype" if version >= (4, 56) else "torch_dtype"
        tokenizer = load_tokenizer(source)
        try:
            model = transformers.AutoModelForCausalLM.from_pretrained(source, local_files_only=True, **{dtype_arg: dtype})
            model.to(device)
        except (OSError, ValueError, RuntimeError) as exc:
            raise BackendError(f"transformers:{source}: cannot load the model on {device}: {exc}") from exc
        model.eval()
        if tokenizer.pad_token_id is None and tokenizer.eos_token_id is not None:
            tokenizer.pad_token = tokenizer.eos_token
        loaded = LoadedModel(source, device, tokenizer, model, context_length(model.config, tokenizer))
        with _lock:
            _models[key] = loaded
        return loaded


def context_length(config: Any, tokenizer: Any = None) -> int:
    """The model's context: ``max_position_embeddings`` (or kin), capped by the tokenizer's
    ``model_max_length`` when that is a real number; 2048 when neither says."""
    candidates = []
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = config.get(name) if isinstance(config, dict) else getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            candidates.append(value)
            break
    limit = getattr(tokenizer, "model_max_length", None) if tokenizer is not None else None
    if isinstance(limit, int) and 0 < limit < 10_000_000:
        candidates.append(limit)
    return min(candidates) if candidates else 2048


def loaded_models() -> list[tuple[str, str]]:
    """The (source, device) pairs loaded in this process."""
    with _lock:
        return list(_models)


def clear_cache() -> None:
    """Forget every loaded model and tokenizer (tests; freeing memory)."""
    with _lock:
        for loaded in _models.values():
            loaded.worker.stop()
        _models.clear()
        _tokenizers.clear()
        _key_locks.clear()
