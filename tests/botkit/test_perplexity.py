"""Perplexity against values computed directly from the model (tiny random Llama, built here)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from botkit.cli import app
from botkit.errors import ConfigError
from botkit.perplexity import load_causal_lm, model_max_length, perplexity, sequence_nll
from tests.helpers.tiny_model import CORPUS, build_tiny_model

torch = pytest.importorskip("torch")

CONTEXT = 64
SHORT = CORPUS[0]
LONG = " ".join(CORPUS[1:6] * 2)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object, object]:
    folder = build_tiny_model(tmp_path_factory.mktemp("tiny-lm"), context=CONTEXT)
    model, tokenizer = load_causal_lm(str(folder), device="cpu")
    return folder, model, tokenizer


def _ids(tokenizer: object, text: str) -> list[int]:
    return tokenizer(text)["input_ids"]  # type: ignore[operator,index]


def test_short_text_equals_the_model_loss(tiny: tuple) -> None:
    _, model, tokenizer = tiny
    ids = _ids(tokenizer, SHORT)
    assert 2 < len(ids) < CONTEXT
    tensor = torch.tensor([ids])
    with torch.no_grad():
        expected = math.exp(model(tensor, labels=tensor).loss.item())
    result = perplexity(model, tokenizer, [SHORT])
    assert result.perplexity == pytest.approx(expected, rel=1e-4)
    assert result.tokens == len(ids) - 1 and result.documents == 1
    assert result.max_length == CONTEXT and result.stride == CONTEXT // 2


def _manual_sliding_window(model: object, ids: list[int], max_length: int, stride: int) -> tuple[float, int]:
    """The Hugging Face docs' recipe, with the model's own mean loss per window."""
    seq = torch.tensor([ids])
    nll_sum, n_tokens, prev_end = 0.0, 0, 0
    for begin in range(0, seq.size(1), stride):
        end = min(begin + max_length, seq.size(1))
        trg_len = end - prev_end
        input_ids = seq[:, begin:end]
        target = input_ids.clone()
        target[:, :-trg_len] = -100
        with torch.no_grad():
            loss = model(input_ids, labels=target).loss  # type: ignore[operator]
        valid = int((target[:, 1:] != -100).sum())
        nll_sum += loss.item() * valid
        n_tokens += valid
        prev_end = end
        if end == seq.size(1):
            break
    return nll_sum, n_tokens


@pytest.mark.parametrize("stride", [24, 64])
def test_long_text_matches_a_manual_sliding_window(tiny: tuple, stride: int) -> None:
    _, model, tokenizer = tiny
    ids = _ids(tokenizer, LONG)
    assert len(ids) > 2 * CONTEXT
    nll, tokens = _manual_sliding_window(model, ids, CONTEXT, stride)
    if stride < CONTEXT:  # overlapping windows score every token but the first exactly once
        assert tokens == len(ids) - 1
    else:  # disjoint windows: the first token of each window has no context and is not scored
        assert tokens == len(ids) - math.ceil(len(ids) / CONTEXT)
    ours_nll, ours_tokens = sequence_nll(model, ids, max_length=CONTEXT, stride=stride)
    assert ours_tokens == tokens
    assert ours_nll == pytest.approx(nll, rel=1e-4)


def test_documents_are_token_weighted(tiny: tuple) -> None:
    _, model, tokenizer = tiny
    parts = [sequence_nll(model, _ids(tokenizer, t), max_length=CONTEXT, stride=32) for t in (SHORT, LONG)]
    expected = math.exp(sum(n for n, _ in parts) / sum(c for _, c in parts))
    result = perplexity(model, tokenizer, [SHORT, LONG, ""], stride=32)
    assert result.perplexity == pytest.approx(expected, rel=1e-6)
    assert result.documents == 2 and result.skipped == 1


def test_window_is_capped_at_the_model_context(tiny: tuple) -> None:
    _, model, tokenizer = tiny
    assert model_max_length(model, tokenizer) == CONTEXT
    assert perplexity(model, tokenizer, [LONG], max_length=10_000).max_length == CONTEXT
    with pytest.raises(ConfigError):
        sequence_nll(model, _ids(tokenizer, LONG), max_length=16, stride=32)


def test_cli_on_a_text_file(tiny: tuple, tmp_path: Path) -> None:
    folder, model, tokenizer = tiny
    text = tmp_path / "doc.txt"
    text.write_text(LONG, encoding="utf-8")
    result = CliRunner().invoke(app, ["perplexity", "--model", str(folder), "--text", str(text), "--stride", "32", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    expected = perplexity(model, tokenizer, [LONG], stride=32)
    assert data["perplexity"] == pytest.approx(expected.perplexity, rel=1e-4)
    assert data["tokens"] == expected.tokens and data["stride"] == 32


def test_cli_missing_model(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["perplexity", "--model", str(tmp_path / "nope"), "--text", __file__])
    assert result.exit_code == 2
    assert "no such folder" in result.output
