"""ScriptedBackend: the test double users get with botkit."""

from __future__ import annotations

import time

import pytest

from botkit.backends.base import ChatMessage, Done, Prompt, TextDelta
from botkit.backends.scripted import ScriptedBackend
from botkit.errors import BackendTimeout, BackendUnavailable
from knowledge.types import Passage


def make_prompt(question: str = "Where is my order?") -> Prompt:
    return Prompt([ChatMessage("user", question)], question, [])


async def test_replies_in_order_then_default_and_records_prompts() -> None:
    backend = ScriptedBackend()
    backend.enqueue("first")
    backend.enqueue("second")
    prompts = [make_prompt(q) for q in ("a", "b", "c")]
    texts = [(await backend.generate(p, timeout=1)).text for p in prompts]
    assert texts == ["first", "second", "[scripted] c"]
    assert backend.prompts == prompts
    assert backend.pending == 0


async def test_completion_fields() -> None:
    backend = ScriptedBackend(model="bot")
    backend.enqueue("Reset it in Settings [1].", abstained=False)
    passage = Passage("c1", "a.md", "A", "", "text", 0.9)
    completion = await backend.generate(Prompt([ChatMessage("user", "q")], "q", [passage]), timeout=1)
    assert completion.backend == "scripted:bot"
    assert completion.cited == (1,)
    assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens > 0


async def test_exception_is_raised() -> None:
    backend = ScriptedBackend()
    backend.enqueue(BackendUnavailable("down"))
    with pytest.raises(BackendUnavailable):
        await backend.generate(make_prompt(), timeout=1)


async def test_delay_beyond_timeout_raises_backend_timeout_at_the_deadline() -> None:
    backend = ScriptedBackend()
    backend.enqueue("slow", delay=5)
    started = time.monotonic()
    with pytest.raises(BackendTimeout):
        await backend.generate(make_prompt(), timeout=0.1)
    assert 0.09 <= time.monotonic() - started < 1.0


async def test_stream_chunks_and_first_token_delay() -> None:
    backend = ScriptedBackend()
    backend.enqueue("Hello there, friend", chunks=["Hello", " there,", " friend"], first_token_delay=0.05)
    started = time.monotonic()
    events = [e async for e in backend.stream(make_prompt(), timeout=1)]
    assert time.monotonic() - started >= 0.05
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Hello", " there,", " friend"]
    assert isinstance(events[-1], Done) and events[-1].completion.text == "Hello there, friend"


async def test_stream_failure_after_text_keeps_partial_text() -> None:
    backend = ScriptedBackend()
    backend.enqueue("one two", then_raise=BackendUnavailable("dropped"))
    seen = []
    with pytest.raises(BackendUnavailable) as info:
        async for event in backend.stream(make_prompt(), timeout=1):
            seen.append(event)
    assert "".join(e.text for e in seen) == "one two"
    assert info.value.partial_text == "one two"  # type: ignore[attr-defined]


async def test_stream_timeout_mid_stream() -> None:
    backend = ScriptedBackend()
    backend.enqueue("a b c d", delay=3)
    with pytest.raises(BackendTimeout):
        async for _ in backend.stream(make_prompt(), timeout=0.2):
            pass


def test_chunks_must_join_to_reply() -> None:
    with pytest.raises(ValueError):
        ScriptedBackend().enqueue("abc", chunks=["ab"])
