"""The transformers backend, loading a tiny random model built at test time."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from botkit.backends import _hf_models
from botkit.backends.base import ChatMessage, Done, Prompt, TextDelta
from botkit.backends.registry import create_backend
from botkit.backends.transformers_backend import TransformersBackend, fit_prompt, render
from botkit.config import BotConfig
from botkit.errors import BackendTimeout
from tests.helpers.tiny_model import build_tiny_model

CONTEXT = 512
SYSTEM = "You are the support assistant of Acme."


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"), context=CONTEXT)


@pytest.fixture
def config() -> BotConfig:
    return BotConfig.model_validate({"transformers": {"device": "cpu", "max_new_tokens": 8}})


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    _hf_models.clear_cache()
    yield
    _hf_models.clear_cache()


def prompt(question: str = "How do I reset my password?", history: list[ChatMessage] | None = None,
           max_tokens: int | None = None) -> Prompt:
    messages = [ChatMessage("system", SYSTEM), *(history or []), ChatMessage("user", question)]
    return Prompt(messages, question, [], max_tokens=max_tokens)


async def test_generate_and_stream(tiny_model: Path, config: BotConfig) -> None:
    backend = create_backend(f"transformers:{tiny_model}", config)
    assert isinstance(backend, TransformersBackend)
    assert backend.max_context_tokens == CONTEXT  # read from config.json before loading
    completion = await backend.generate(prompt(), timeout=60)
    assert isinstance(completion.text, str) and completion.text
    assert completion.usage.completion_tokens == 8  # special tokens are suppressed: it never stops early
    assert completion.usage.prompt_tokens == len(render(backend._loaded.tokenizer, prompt().messages))  # type: ignore[union-attr]
    assert completion.backend == f"transformers:{tiny_model}"

    events = [e async for e in backend.stream(prompt(max_tokens=5), timeout=60)]
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    done = events[-1]
    assert isinstance(done, Done) and deltas
    assert "".join(deltas) == done.completion.text
    assert done.completion.usage.completion_tokens == 5


async def test_model_is_loaded_once_for_two_instances(tiny_model: Path, config: BotConfig) -> None:
    first = TransformersBackend(model=str(tiny_model), config=config)
    second = TransformersBackend(model=str(tiny_model), config=config)
    await first.generate(prompt(), timeout=60)
    await second.generate(prompt(), timeout=60)
    assert first._loaded is second._loaded
    assert _hf_models.loaded_models() == [(str(tiny_model.resolve()), "cpu")]


async def test_long_history_is_truncated_from_the_left(tiny_model: Path, config: BotConfig) -> None:
    backend = TransformersBackend(model=str(tiny_model), config=config)
    loaded = await backend.load()
    filler = "Refunds reach your card within five to ten business days. " * 4
    history = [ChatMessage("user" if i % 2 == 0 else "assistant", f"turn {i}: {filler}") for i in range(40)]
    long_prompt = prompt("What about my latest order?", history)
    assert len(render(loaded.tokenizer, long_prompt.messages)) > CONTEXT

    ids, max_new = fit_prompt(loaded, long_prompt.messages, 8)
    assert len(ids) + max_new <= CONTEXT
    text = loaded.tokenizer.decode(ids)
    assert text.startswith(f"<|system|>{SYSTEM}")  # the system message stays
    assert "What about my latest order?" in text  # so does the latest user message
    assert "turn 39:" in text and "turn 0:" not in text  # the oldest turns go first

    completion = await backend.generate(long_prompt, timeout=60)
    assert completion.usage.prompt_tokens <= CONTEXT - 8


async def test_deadline_stops_generation(tiny_model: Path, config: BotConfig) -> None:
    backend = TransformersBackend(model=str(tiny_model), config=config)
    await backend.load()
    started = time.monotonic()
    with pytest.raises(BackendTimeout) as info:
        await backend.generate(prompt(max_tokens=256), timeout=0.1)
    assert time.monotonic() - started < 0.1 + 1.0
    assert isinstance(info.value.partial_text, str)  # type: ignore[attr-defined]
    # The model is free again: the next call works.
    assert (await backend.generate(prompt(), timeout=60)).usage.completion_tokens == 8


async def test_plain_transcript_without_chat_template(tiny_model: Path) -> None:
    tokenizer = _hf_models.load_tokenizer(str(tiny_model.resolve()))
    template, tokenizer.chat_template = tokenizer.chat_template, None
    try:
        text = tokenizer.decode(render(tokenizer, [ChatMessage("system", "Be brief."), ChatMessage("user", "Hi")]))
    finally:
        tokenizer.chat_template = template
    assert text.endswith("System: Be brief.\nUser: Hi\nAssistant:")


def test_count_tokens_uses_the_model_tokenizer(tiny_model: Path, config: BotConfig) -> None:
    backend = TransformersBackend(model=str(tiny_model), config=config)
    assert backend.count_tokens("reset your password") == len(
        _hf_models.load_tokenizer(backend.source).encode("reset your password", add_special_tokens=False)
    )
    assert _hf_models.loaded_models() == []  # counting does not load the weights


async def test_generations_reuse_the_model_thread(tiny_model: Path, config: BotConfig) -> None:
    """One long-lived thread per model: GPU libraries keep per-thread state (handles,
    attention plans) that a fresh thread per reply would rebuild every time."""
    backend = TransformersBackend(model=str(tiny_model), config=config)
    for _ in range(3):
        await backend.generate(prompt(), timeout=60)
    workers = [t for t in threading.enumerate() if t.name.startswith("botkit-generate-")]
    assert len(workers) == 1 and workers[0].daemon
    _hf_models.clear_cache()
    workers[0].join(timeout=5)
    assert not workers[0].is_alive()  # clearing the cache lets the thread end


async def test_a_reply_that_waited_past_its_deadline_is_not_started(tiny_model: Path, config: BotConfig) -> None:
    backend = TransformersBackend(model=str(tiny_model), config=config)
    loaded = await backend.load()
    calls = []
    real_generate = loaded.model.generate
    loaded.model.generate = lambda *a, **kw: calls.append(1) or real_generate(*a, **kw)
    busy = threading.Event()
    loaded.worker.submit(lambda: busy.wait(5))  # another reply holding the model
    with pytest.raises(BackendTimeout):
        await backend.generate(prompt(), timeout=0.2)
    busy.set()
    assert (await backend.generate(prompt(), timeout=60)).usage.completion_tokens == 8
    assert len(calls) == 1  # only the second reply ran


def test_generation_worker_runs_jobs_in_order_and_survives_a_failure() -> None:
    worker = _hf_models.GenerationWorker("botkit-generate-test")
    done: list[object] = []
    finished = threading.Event()

    def fail() -> None:
        raise RuntimeError("boom")

    worker.submit(lambda: done.append(threading.current_thread()))
    worker.submit(fail)
    worker.submit(lambda: done.append(threading.current_thread()))
    worker.submit(finished.set)
    assert finished.wait(5)
    assert len(done) == 2 and done[0] is done[1]
    worker.stop()
