"""Fine-tuned escalation classifier: data checks, training (MiniLM, offline), loading, policy."""

from __future__ import annotations

import csv
import json
import random
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from botkit.classifier import META_FILE, EscalationClassifier, TextClassifier
from botkit.cli import app
from botkit.config import EscalationSettings
from botkit.errors import ConfigError
from botkit.policy import EscalationPolicy
from botkit.training import read_labelled_csv, split

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "escalation" / "escalation.csv"


def _sample(per_label: int, seed: int = 3) -> list[tuple[str, str]]:
    texts, labels = read_labelled_csv(EXAMPLE)
    rows: list[tuple[str, str]] = []
    for label in sorted(set(labels)):
        pool = [t for t, y in zip(texts, labels) if y == label]
        rows += [(t, label) for t in random.Random(seed).sample(pool, per_label)]
    return rows


def _write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


def test_example_set() -> None:
    texts, labels = read_labelled_csv(EXAMPLE)
    assert len(texts) >= 300 and set(labels) == {"escalate", "ok"}
    assert len(set(texts)) == len(texts)
    assert min(labels.count("escalate"), labels.count("ok")) >= 100


def test_csv_errors_name_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nhello,ok\nworld,\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="line 3: field 'label' is empty"):
        read_labelled_csv(bad)
    bad.write_text("message,class\nhello,ok\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="header naming the columns text and label"):
        read_labelled_csv(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        read_labelled_csv(tmp_path / "none.csv")


def test_split_is_stratified_and_checked() -> None:
    rows = _sample(20)
    train_x, test_x, train_y, test_y = split([t for t, _ in rows], [y for _, y in rows], test_size=0.2, seed=1)
    assert len(test_x) == 8 and test_y.count("escalate") == 4 and len(train_x) == 32
    with pytest.raises(ConfigError, match="at least two labels"):
        split(["a", "b"], ["ok", "ok"], test_size=0.5, seed=0)
    with pytest.raises(ConfigError, match="too few: rare"):
        split(["a", "b", "c"], ["ok", "ok", "rare"], test_size=0.3, seed=0)


def test_loading_a_missing_or_foreign_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        EscalationClassifier.load(tmp_path / "nope")
    with pytest.raises(ConfigError, match="not a botkit classifier"):
        EscalationClassifier.load(tmp_path)


def _tiny_classifier(folder: Path) -> Path:
    """A randomly initialised 1-layer BERT classifier saved like train-classifier does (no training)."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from botkit.training import resolve_base

    tokenizer = AutoTokenizer.from_pretrained(resolve_base("all-MiniLM-L6-v2"), local_files_only=True)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, num_labels=2, id2label={0: "escalate", 1: "ok"},
                        label2id={"escalate": 0, "ok": 1})
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    meta = {"format": 1, "labels": ["escalate", "ok"], "positive_label": "escalate", "base_model": "tiny", "max_length": 32}
    (folder / META_FILE).write_text(json.dumps(meta), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_classifier(tmp_path_factory.mktemp("tiny-clf"))


def test_load_predict_and_cache(tiny: Path) -> None:
    classifier = EscalationClassifier.load(tiny)
    assert EscalationClassifier.load(tiny).model is classifier.model  # loaded once per process
    texts = ["I want to speak to your manager right now", "How do I export my invoices?", "x " * 500]
    assert all(label in {"escalate", "ok"} for label in classifier.predict(texts))
    probabilities = classifier.predict_proba(texts)  # the long text is truncated to max_length
    assert all(sum(p.values()) == pytest.approx(1.0, abs=1e-5) for p in probabilities)
    p = classifier.escalation_probability(texts[0])
    assert 0.0 <= p <= 1.0 and p == pytest.approx(probabilities[0]["escalate"], abs=1e-5)


def _check_policy(classifier: EscalationClassifier) -> None:
    text = "My parcel never came and nobody has replied to my emails for two weeks."
    assert not EscalationPolicy(EscalationSettings()).before_answer(text).escalate  # the rules alone let it through
    p = classifier.escalation_probability(text)
    at = EscalationPolicy(EscalationSettings(classifier_threshold=p), classifier=classifier).before_answer(text)
    assert at.escalate and at.reason == "escalation classifier"
    if p < 0.999:
        above = EscalationPolicy(EscalationSettings(classifier_threshold=p + 1e-3), classifier=classifier)
        assert not above.before_answer(text).escalate
    off = EscalationPolicy(EscalationSettings(enabled=False, classifier_threshold=0.0), classifier=classifier)
    assert not off.before_answer(text).escalate


def test_policy_uses_the_classifier(tiny: Path) -> None:
    _check_policy(EscalationClassifier.load(tiny))


def test_escalation_needs_a_positive_label(tiny: Path, tmp_path: Path) -> None:
    copy = tmp_path / "topics"
    shutil.copytree(tiny, copy)
    meta = json.loads((copy / META_FILE).read_text())
    meta["positive_label"] = None
    (copy / META_FILE).write_text(json.dumps(meta))
    assert TextClassifier.load(copy).labels == ["escalate", "ok"]  # any label set loads as a classifier
    with pytest.raises(ConfigError, match="no positive label"):
        EscalationClassifier.load(copy)


@pytest.mark.slow
def test_train_classifier_command(tmp_path: Path) -> None:
    """``botkit train-classifier`` on 40 example rows for one epoch (MiniLM, offline)."""
    data = _write_csv(tmp_path / "small.csv", _sample(20))
    out = tmp_path / "model"
    result = CliRunner().invoke(app, ["train-classifier", str(data), "--out", str(out), "--epochs", "1",
                                      "--batch-size", "8", "--max-length", "32", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # stdout is only the JSON document (no Trainer logs)
    assert report["labels"] == ["escalate", "ok"] and report["positive_label"] == "escalate"
    assert report["train_rows"] == 32 and report["test_rows"] == 8
    assert 0.0 <= report["metrics"]["macro_f1"] <= 1.0 and 0.0 <= report["metrics"]["accuracy"] <= 1.0
    assert set(report["metrics"]["per_label"]) == {"escalate", "ok"}
    meta = json.loads((out / META_FILE).read_text())
    assert meta["base_model"] == "all-MiniLM-L6-v2" and meta["max_length"] == 32
    classifier = EscalationClassifier.load(out)
    assert set(classifier.predict(["Get me a manager now", "Where is my invoice?"])) <= {"escalate", "ok"}
    _check_policy(classifier)


@pytest.mark.slow
def test_full_example_set_trains_a_good_classifier(tmp_path: Path) -> None:
    texts, labels = read_labelled_csv(EXAMPLE)
    from botkit.training import TrainingOptions, train_classifier

    report = train_classifier(texts, labels, tmp_path / "model", TrainingOptions())
    assert report.metrics["macro_f1"] >= 0.85
    classifier = EscalationClassifier.load(tmp_path / "model")
    assert classifier.escalation_probability("Get me a real person, this is the third time I'm asking!") > 0.5
    assert classifier.escalation_probability("How do I add a person to my workspace?") < 0.5
