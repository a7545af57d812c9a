"""Embeddings on ONNX Runtime: the same model and vectors, less CPU per text.

A sentence-transformers model made of a Hugging Face encoder, mean pooling and
normalisation (all-MiniLM-L6-v2, the default, is one) is exported once to ONNX (the file is
cached, see :func:`cache_dir`) and run by ONNX Runtime for queries. On CPU this answers a
single query several times faster than torch (about 2 ms against 10 ms for MiniLM on
two cores) and, with thread spinning off, does not collapse when other processes hold the
cores. Vectors match the torch model's within 1e-4 (checked on load; any mismatch, export
failure or unsupported model keeps torch, with a log line saying why).

Used by :class:`~knowledge.embeddings.SentenceTransformerEmbedder` for queries when
``knowledge.query_runtime`` is ``auto`` (the default, CPU only) or ``onnx``, and for the
chunks at ingestion under the same rule with ``knowledge.ingest_runtime``: on 2 CPU cores,
the 246 chunks of the example help centre embedded in 3.2 s against torch's 5.4 s, vectors
within 2e-7 of torch's.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from knowledge.errors import EmbeddingModelError

log = logging.getLogger(__name__)

PARITY_TOLERANCE = 1e-4
_PROBES = (
    "How do I reset my password?",
    "Rechnung herunterladen",
    "退款需要多长时间？",
    "error E1234 when syncing the calendar integration after the last update, what should I do",
    # A chunk-sized text, past the model's maximum length: truncated as torch truncates it.
    "Descaling removes the limescale that builds up inside the machine. " * 40,
)


def cache_dir() -> Path:
    """Where exported models are kept: ``$BOTKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/botkit``,
    else ``~/.cache/botkit`` (subfolder ``onnx``)."""
    root = os.environ.get("BOTKIT_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "botkit"
    )
    return Path(root).expanduser() / "onnx"


class OnnxEncoder:
    """Encodes texts like ``model.encode(..., normalize_embeddings=True)`` on ONNX Runtime.

    Build it with :meth:`from_sentence_transformer`, which exports (or reuses) the ONNX file
    and checks parity with the torch model.
    """

    def __init__(self, session: Any, tokenizer: Any, input_names: Sequence[str], max_length: int) -> None:
        self._session = session
        self._tokenizer = tokenizer
        self._inputs = tuple(input_names)
        self._max_length = max_length

    @classmethod
    def from_sentence_transformer(cls, model: Any, *, model_id: str) -> OnnxEncoder:
        """Export ``model`` (once; cached) and load it; :class:`EmbeddingModelError` when the
        model's pipeline is not encoder + mean pooling (+ normalise), or the export or the
        parity check fails."""
        import onnxruntime as ort

        encoder = _encoder_module(model)
        path = _export(model, encoder, model_id)
        options = ort.SessionOptions()
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # no busy-wait on a shared CPU
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            names = [i.name for i in session.get_inputs()]
            made = cls(session, model.tokenizer, names, int(getattr(model, "max_seq_length", None) or 512))
            mine = made.encode(_PROBES)
        except Exception as exc:  # a damaged cached file: drop it, so the next start exports again
            path.unlink(missing_ok=True)
            raise EmbeddingModelError(f"cannot run the ONNX export {path}: {exc.__class__.__name__}: {exc}") from exc
        reference = np.asarray(
            model.encode(list(_PROBES), normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        )
        difference = float(np.abs(mine - reference).max())
        if not difference <= PARITY_TOLERANCE:
            raise EmbeddingModelError(
                f"the ONNX export of {model_id} differs from the torch model by {difference:.2g} "
                f"(> {PARITY_TOLERANCE:g})"
            )
        return made

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 vectors, one row per text.

        A batch is run as groups of similar length (:func:`length_groups`), each padded to
        its own longest text only: a batch of concurrent queries mixes short and long ones,
        and padding every one to the longest wasted a third of the model's work.
        """
        if not texts:
            return np.zeros((0, int(self._session.get_outputs()[0].shape[-1])), dtype=np.float32)
        batch = self._tokenizer(
            list(texts), padding=True, truncation=True, max_length=self._max_length, return_tensors="np"
        )
        arrays = {name: np.asarray(batch[name], dtype=np.int64) for name in self._inputs}
        mask = np.asarray(batch["attention_mask"])
        lengths = mask.sum(axis=1)
        groups = length_groups(lengths)
        pooled = []
        for rows in groups:
            width = max(int(lengths[rows].max()), 1)
            hidden = self._session.run(None, {name: a[rows, :width] for name, a in arrays.items()})[0]
            weights = mask[rows, :width, None].astype(np.float32)
            pooled.append((hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None))
        out = np.empty((len(lengths), pooled[0].shape[1]), dtype=np.float32)
        out[np.concatenate(groups)] = np.concatenate(pooled)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return np.ascontiguousarray(out / np.clip(norms, 1e-12, None), dtype=np.float32)


#: What one ONNX Runtime call costs besides its tokens, in padded tokens: MiniLM on 2 CPU
#: cores took about 5 ms a call plus 0.19 ms a padded token. The figure only sets where
#: splitting a batch stops paying; on 16-query bursts of the example questions, grouping
#: took 66 ms (median) where one padded call took 73.
CALL_COST_TOKENS = 24


def length_groups(lengths: np.ndarray, call_cost: int = CALL_COST_TOKENS) -> list[np.ndarray]:
    """Row indices of ``lengths`` split into groups of similar length, each run as one call.

    The rows are sorted by length and cut where it minimises the padded tokens plus
    ``call_cost`` a call (an exact dynamic programme over the sorted rows; batches are tens
    of queries). One group when padding costs less than another call.
    """
    order = np.argsort(lengths, kind="stable")
    size = len(order)
    if size <= 1:
        return [order]
    ordered = [int(lengths[i]) for i in order]
    best = [0] + [0] * size  # best[j]: cheapest cost of the first j sorted rows
    cut = [0] * (size + 1)
    for j in range(1, size + 1):
        best[j], cut[j] = min((best[i] + call_cost + (j - i) * ordered[j - 1], i) for i in range(j))
    groups: list[np.ndarray] = []
    j = size
    while j > 0:
        groups.append(order[cut[j]:j])
        j = cut[j]
    return groups[::-1]


def _encoder_module(model: Any) -> Any:
    """The Hugging Face model inside a Transformer → Pooling(mean) [→ Normalize] pipeline."""
    modules = list(model)
    kinds = [type(m).__name__ for m in modules]
    if len(modules) < 2 or kinds[0] != "Transformer" or kinds[1] != "Pooling" or any(
        k != "Normalize" for k in kinds[2:]
    ):
        raise EmbeddingModelError(f"ONNX Runtime supports Transformer → Pooling → Normalize models, not {kinds}")
    if _pooling_mode(modules[1]) != "mean":
        raise EmbeddingModelError(f"ONNX Runtime supports mean pooling only, not {_pooling_mode(modules[1])!r}")
    return modules[0].auto_model


def _pooling_mode(pooling: Any) -> str:
    """``mean``, ``cls``, ... across sentence-transformers versions (a string in newer ones,
    ``pooling_mode_*_tokens`` flags in older ones)."""
    mode = getattr(pooling, "pooling_mode", None)
    if isinstance(mode, str):
        return mode
    flags = [k for k, v in vars(pooling).items() if k.startswith("pooling_mode_") and v is True]
    return "mean" if flags == ["pooling_mode_mean_tokens"] else "+".join(flags) or "unknown"


def _export(model: Any, encoder: Any, model_id: str) -> Path:
    import torch

    parameters = sum(int(p.numel()) for p in encoder.parameters())
    checksum = float(sum(float(p.detach().double().sum()) for p in encoder.parameters()))
    key = hashlib.sha256(f"{model_id}|{parameters}|{checksum:.6e}|{torch.__version__}".encode()).hexdigest()[:20]
    target = cache_dir() / f"{key}.onnx"
    if target.is_file():
        return target
    accepted = set(inspect.signature(encoder.forward).parameters)
    sample = model.tokenizer(["an example query", "a second, longer example query text"], padding=True,
                             return_tensors="pt")
    device = next(encoder.parameters()).device  # a model on a GPU is traced there; the file runs on CPU
    sample = {name: tensor.to(device) for name, tensor in sample.items()}
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in sample and n in accepted]

    class _Hidden(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *inputs: Any) -> Any:
            return self.inner(**dict(zip(names, inputs, strict=True)), return_dict=True).last_hidden_state

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=target.parent, suffix=".onnx.tmp")
    except OSError as exc:
        raise EmbeddingModelError(
            f"cannot write the ONNX export to {target.parent}: {exc}; set BOTKIT_CACHE_DIR to a writable folder"
        ) from exc
    os.close(handle)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _Hidden(encoder).eval(),
                tuple(sample[n] for n in names),
                temporary,
                input_names=names,
                output_names=["last_hidden_state"],
                dynamic_axes={n: {0: "batch", 1: "tokens"} for n in [*names, "last_hidden_state"]},
                opset_version=17,
                dynamo=False,
            )
        os.replace(temporary, target)  # atomic: concurrent workers never read a half-written file
    except Exception as exc:
        Path(temporary).unlink(missing_ok=True)
        raise EmbeddingModelError(f"cannot export {model_id} to ONNX: {exc.__class__.__name__}: {exc}") from exc
    log.info("exported %s to %s for ONNX queries", model_id, target)
    return target


__all__ = ["CALL_COST_TOKENS", "OnnxEncoder", "cache_dir", "length_groups"]
