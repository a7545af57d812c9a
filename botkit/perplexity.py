"""Perplexity of a local causal language model over a bot's knowledge or a text file.

How well a model "knows" the text of a help centre is a cheap first check before using
it as a ``transformers:`` backend. Texts longer than the window are scored with the
standard sliding window (Hugging Face's "Perplexity of fixed-length models"): windows of
``max_length`` tokens advance by ``stride``; each window scores only the tokens the
previous window did not, with the tokens before them as context. The result is the
token-weighted mean negative log-likelihood over all documents, exponentiated.

torch and transformers are imported inside the functions that need them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from botkit.errors import ConfigError

#: Context length used when the model does not state one (or states an absurd one).
FALLBACK_MAX_LENGTH = 1024


@dataclass(frozen=True)
class PerplexityResult:
    """The figure and what it was computed over."""

    perplexity: float
    mean_nll: float
    tokens: int
    documents: int
    skipped: int
    model: str
    max_length: int
    stride: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``botkit perplexity --json``)."""
        return asdict(self)


def load_causal_lm(name_or_path: str, *, device: str | None = None) -> tuple[Any, Any]:
    """Load a local causal LM and its tokenizer (``local_files_only``: never downloads).

    ``name_or_path`` is a folder or a model id already in the Hugging Face cache. Raises
    :class:`ConfigError` with the fix when it cannot be loaded.
    """
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:  # pragma: no cover - core dependencies
        raise ConfigError("transformers and torch are needed for perplexity", hint="pip install transformers torch") from exc
    path = Path(name_or_path).expanduser()
    target = str(path.resolve()) if path.exists() else name_or_path
    if name_or_path.startswith((".", "/", "~")) and not path.is_dir():
        raise ConfigError(f"--model {name_or_path}: no such folder")
    _quiet_transformers()
    try:
        tokenizer = AutoTokenizer.from_pretrained(target, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(target, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"--model {name_or_path}: cannot load a causal language model: {exc}",
            hint="give a local folder saved with save_pretrained, or a model id already in the Hugging Face cache",
        ) from exc
    resolved = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model.to(resolved)
    model.eval()
    return model, tokenizer


def model_max_length(model: Any, tokenizer: Any | None = None) -> int:
    """The model's context length: ``max_position_embeddings`` (or ``n_positions``),
    else the tokenizer's ``model_max_length``, else :data:`FALLBACK_MAX_LENGTH`."""
    config = getattr(model, "config", None)
    for attr in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and 0 < value < 1_000_000:
            return value
    value = getattr(tokenizer, "model_max_length", None)
    if isinstance(value, int) and 0 < value < 1_000_000:
        return value
    return FALLBACK_MAX_LENGTH


def sequence_nll(model: Any, input_ids: Sequence[int], *, max_length: int, stride: int) -> tuple[float, int]:
    """Summed negative log-likelihood (nats) of ``input_ids`` and the number of tokens scored.

    The first token is never scored (nothing predicts it). Sliding window: each window of at
    most ``max_length`` tokens starts ``stride`` after the previous one and scores only the
    tokens past the previous window's end.
    """
    import torch

    if stride < 1 or max_length < 2 or stride > max_length:
        raise ConfigError(f"need 1 <= stride <= max_length and max_length >= 2 (stride {stride}, max length {max_length})")
    ids = torch.as_tensor(list(input_ids), dtype=torch.long)
    length = int(ids.numel())
    if length < 2:
        return 0.0, 0
    device = next(model.parameters()).device
    total, counted, previous_end = 0.0, 0, 0
    with torch.inference_mode():
        for begin in range(0, length, stride):
            end = min(begin + max_length, length)
            window = ids[begin:end].to(device)
            new = end - previous_end  # tokens this window scores (the last ``new`` ones)
            logits = model(window.unsqueeze(0)).logits[0, :-1].float()
            targets = window[1:]
            first = max(len(targets) - new, 0)
            nll = torch.nn.functional.cross_entropy(logits[first:], targets[first:], reduction="sum")
            total += float(nll)
            counted += int(len(targets) - first)
            previous_end = end
            if end == length:
                break
    return total, counted


def perplexity(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    max_length: int | None = None,
    stride: int | None = None,
    model_name: str = "",
    progress: Callable[[int, int], None] | None = None,
) -> PerplexityResult:
    """Token-weighted perplexity of ``model`` over ``texts`` (each a separate document).

    ``max_length`` defaults to the model's context, ``stride`` to half of it. Texts of fewer
    than two tokens are skipped (counted in ``skipped``).
    """
    window = max_length or model_max_length(model, tokenizer)
    window = min(window, model_max_length(model, tokenizer))
    step = stride or max(1, window // 2)
    total, tokens, documents, skipped = 0.0, 0, 0, 0
    for index, text in enumerate(texts, start=1):
        ids = tokenizer(text, add_special_tokens=True)["input_ids"]
        nll, counted = sequence_nll(model, ids, max_length=window, stride=step)
        if counted == 0:
            skipped += 1
        else:
            total += nll
            tokens += counted
            documents += 1
        if progress is not None:
            progress(index, len(texts))
    if tokens == 0:
        raise ConfigError("no text to score: every document was empty or a single token")
    mean = total / tokens
    return PerplexityResult(
        perplexity=math.exp(mean), mean_nll=mean, tokens=tokens, documents=documents, skipped=skipped,
        model=model_name, max_length=window, stride=step,
    )


def knowledge_texts(config: Any) -> list[str]:
    """The text of every chunk in a bot's index (sorted by chunk id, so runs are comparable)."""
    from knowledge.index import KnowledgeBase

    kb = KnowledgeBase.open(config.knowledge, config.root, config.data_path, chroma_path=config.chroma_path)
    try:
        ids = sorted(kb.store.ids())
        if not ids:
            raise ConfigError(
                f"the knowledge base of {config.root} is empty", hint=f"index it with `botkit ingest --bot {config.root}`"
            )
        chunks = []
        for start in range(0, len(ids), 500):
            chunks.extend(kb.store.get(ids[start : start + 500]))
        return [c.text for c in chunks if c.text.strip()]
    finally:
        kb.close()


def _quiet_transformers() -> None:
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except (ImportError, AttributeError):  # cosmetics only
        pass


__all__ = ["PerplexityResult", "knowledge_texts", "load_causal_lm", "model_max_length", "perplexity", "sequence_nll"]
