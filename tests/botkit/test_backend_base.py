"""The Backend base class, its value types and the token helpers."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict

from botkit.backends.base import (
    Backend,
    ChatMessage,
    Completion,
    Done,
    Prompt,
    TextDelta,
    Usage,
    backend_error,
    is_retryable,
    parse_citations,
)
from botkit.errors import BackendUnavailable, ConfigError
from botkit.tokens import approx_tokens, tiktoken_counter


def make_prompt(question: str = "How do I reset my password?") -> Prompt:
    return Prompt(messages=[ChatMessage("system", "Be brief."), ChatMessage("user", question)], question=question, passages=[])


class Echo(Backend):
    kind = "echo"

    async def generate(self, prompt: Prompt, *, timeout: float) -> Completion:
        return Completion(prompt.question, Usage(1, 1), self.spec)


def test_incomplete_backend_fails_at_construction() -> None:
    class Incomplete(Backend):
        kind = "incomplete"

    with pytest.raises(TypeError, match="abstract"):
        Incomplete(model="x")  # type: ignore[abstract]


async def test_default_stream_is_generate_then_done() -> None:
    events = [e async for e in Echo(model="m").stream(make_prompt("hi"), timeout=1)]
    assert events == [TextDelta("hi"), Done(Completion("hi", Usage(1, 1), "echo:m"))]


def test_spec_and_capability_defaults() -> None:
    backend = Echo(model="m")
    assert backend.spec == "echo:m"
    assert Echo(model="").spec == "echo"
    assert (backend.supports_streaming, backend.needs_network, backend.needs_llm_prompt) == (False, False, True)
    assert backend.max_context_tokens == 4096
    assert backend.count_tokens("hello world") == approx_tokens("hello world")


def test_options_are_validated_with_extra_forbid() -> None:
    class SizeOptions(BaseModel):
        model_config = ConfigDict(extra="forbid")
        size: int = 1

    class Sized(Echo):
        kind = "sized"
        Options = SizeOptions

    class Other(BaseModel):
        sise: int = 2

    assert Sized(model="m").options == SizeOptions()
    assert Sized(model="m", options=SizeOptions(size=3)).options == SizeOptions(size=3)
    with pytest.raises(ConfigError, match="sise"):
        Sized(model="m", options=Other(sise=3))


def test_backend_error_carries_retryable() -> None:
    error = backend_error(BackendUnavailable, "down", retryable=False)
    assert isinstance(error, BackendUnavailable) and not is_retryable(error)
    assert is_retryable(BackendUnavailable("no flag: optimistic"))


def test_parse_citations() -> None:
    assert parse_citations("See [2] and [1, 3]; also [2] and [9].", 3) == (2, 1, 3)
    assert parse_citations("no markers", 3) == ()


def test_approx_tokens() -> None:
    assert approx_tokens("") == 0
    assert approx_tokens("Reset it.") == 3  # "Reset", "it", "."
    assert approx_tokens("internationalization") == 4
    assert approx_tokens("order 1234567") == 4
    # Within a sane range of a BPE count for prose (~1.3 tokens per word).
    prose = "Refunds reach your card within five to ten business days after we receive the return. " * 10
    assert 160 <= approx_tokens(prose) <= 220


def test_tiktoken_counter_never_downloads(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))  # an empty cache
    tiktoken_counter.cache_clear()
    try:
        assert tiktoken_counter("gpt-4o-mini") is None
    finally:
        tiktoken_counter.cache_clear()
