"""Fine-tuned text classifiers, and the escalation classifier the policy consults.

``botkit train-classifier`` (:mod:`botkit.training`) saves a Hugging Face sequence
classification model, its tokenizer and ``botkit_classifier.json`` (labels, positive
label, base model, held-out metrics) into a folder. :class:`TextClassifier` loads such a
folder for any label set; :class:`EscalationClassifier` adds
:meth:`~EscalationClassifier.escalation_probability`, which
:class:`botkit.policy.EscalationPolicy` compares with ``escalation.classifier_threshold``.

Loaded models are cached per folder and device, so many bots or turns share one copy.
Inference runs under ``torch.inference_mode`` with truncation to the length used in
training: a few milliseconds per message for the MiniLM default on a CPU.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from botkit.errors import ConfigError

META_FILE = "botkit_classifier.json"
ESCALATE_LABEL = "escalate"
META_FORMAT = 1

_CACHE: dict[tuple[str, str, float], TextClassifier] = {}
_CACHE_LOCK = threading.Lock()


def read_meta(folder: str | Path) -> dict[str, Any]:
    """Read and check ``botkit_classifier.json`` of a classifier folder."""
    path = Path(folder).expanduser() / META_FILE
    if not path.parent.is_dir():
        raise ConfigError(
            f"classifier folder {path.parent} does not exist",
            hint="train one with `botkit train-classifier DATA.csv --out DIR`",
        )
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{path.parent} is not a botkit classifier (no {META_FILE})",
            hint="train one with `botkit train-classifier DATA.csv --out DIR`",
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: unreadable: {exc}") from exc
    labels = meta.get("labels") if isinstance(meta, dict) else None
    if not isinstance(labels, list) or len(labels) < 2 or not all(isinstance(x, str) for x in labels):
        raise ConfigError(f"{path}: 'labels' must list at least two label names")
    return meta


class TextClassifier:
    """A fine-tuned sequence classifier over any label set. Build it with :meth:`load`."""

    def __init__(
        self, *, model: Any, tokenizer: Any, labels: Sequence[str], meta: dict[str, Any], path: Path, device: str
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.labels = list(labels)
        self.meta = meta
        self.path = path
        self.device = device
        self.max_length = int(meta.get("max_length") or 128)
        self.positive_label: str | None = meta.get("positive_label")

    @classmethod
    def load(cls, path: str | Path, *, device: str | None = None) -> TextClassifier:
        """Load (once per process, folder and device) a folder saved by ``botkit train-classifier``.

        Raises :class:`ConfigError` naming the folder when it is missing or not a classifier.
        """
        folder = Path(path).expanduser().resolve()
        meta = read_meta(folder)
        try:
            import torch
        except ImportError as exc:  # pragma: no cover - core dependency
            raise ConfigError("torch is needed for the escalation classifier", hint="pip install torch") from exc
        resolved = device or ("cuda" if torch.cuda.is_available() else "cpu")
        key = (str(folder), resolved, (folder / META_FILE).stat().st_mtime)
        with _CACHE_LOCK:
            cached = _CACHE.get(key)
            if cached is None:
                model, tokenizer = _load_model(folder, resolved)
                cached = _CACHE[key] = TextClassifier(
                    model=model, tokenizer=tokenizer, labels=meta["labels"], meta=meta, path=folder, device=resolved
                )
        if cls is TextClassifier or isinstance(cached, cls):
            return cached
        return cls(model=cached.model, tokenizer=cached.tokenizer, labels=cached.labels, meta=cached.meta,
                   path=cached.path, device=cached.device)

    def predict_proba(self, texts: Sequence[str]) -> list[dict[str, float]]:
        """Label probabilities (softmax) for each text."""
        if not texts:
            return []
        import torch

        batch = self.tokenizer(
            list(texts), truncation=True, max_length=self.max_length, padding=True, return_tensors="pt"
        ).to(self.device)
        with torch.inference_mode():
            probs = torch.softmax(self.model(**batch).logits.float(), dim=-1).cpu().tolist()
        return [dict(zip(self.labels, row)) for row in probs]

    def predict(self, texts: Sequence[str]) -> list[str]:
        """The most probable label of each text."""
        return [max(p, key=p.__getitem__) for p in self.predict_proba(texts)]

    def probability(self, text: str, label: str) -> float:
        """Probability of ``label`` for one text."""
        if label not in self.labels:
            raise ConfigError(f"classifier {self.path} has no label {label!r}; its labels: {', '.join(self.labels)}")
        return self.predict_proba([text])[0][label]


class EscalationClassifier(TextClassifier):
    """A classifier with a positive label (``escalate``) that the escalation policy uses."""

    @classmethod
    def load(cls, path: str | Path, *, device: str | None = None) -> EscalationClassifier:
        """Load a classifier folder; it must name a positive label (``escalation.classifier``)."""
        classifier = super().load(path, device=device)
        assert isinstance(classifier, EscalationClassifier)
        if not classifier.positive_label or classifier.positive_label not in classifier.labels:
            raise ConfigError(
                f"escalation.classifier {classifier.path}: no positive label (labels: {', '.join(classifier.labels)})",
                hint=f"train it on data with a label named {ESCALATE_LABEL!r}",
            )
        return classifier

    def escalation_probability(self, text: str) -> float:
        """Probability that ``text`` should go to a person (0..1)."""
        assert self.positive_label is not None
        return self.probability(text, self.positive_label)


def _load_model(folder: Path, device: str) -> tuple[Any, Any]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        model = AutoModelForSequenceClassification.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"classifier {folder}: cannot load the model: {exc}") from exc
    model.to(device)
    model.eval()
    return model, tokenizer


__all__ = ["ESCALATE_LABEL", "META_FILE", "EscalationClassifier", "TextClassifier", "read_meta"]
