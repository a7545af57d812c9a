"""The langchain backend with LangChain's fake chat models."""

from __future__ import annotations

import asyncio
import importlib.machinery
import sys
import types
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from botkit.backends.base import ChatMessage, Done, Prompt, TextDelta
from botkit.backends.langchain_backend import LangChainBackend
from botkit.backends.registry import create_backend
from botkit.config import BotConfig
from botkit.errors import BackendError, BackendTimeout, BackendUnavailable, ConfigError

PROMPT = Prompt(
    [ChatMessage("system", "Be brief."), ChatMessage("assistant", "Hi!"), ChatMessage("user", "Where is my order?")],
    "Where is my order?",
    [],
)


def fake(*replies: AIMessage) -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=iter(replies))


class Recording(GenericFakeChatModel):
    """Records the messages it receives."""

    seen: list[list[BaseMessage]] = []

    async def _astream(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        Recording.seen.append(messages)
        async for chunk in super()._astream(messages, *args, **kwargs):
            yield chunk


async def test_generate_with_usage_metadata() -> None:
    usage = {"input_tokens": 12, "output_tokens": 4, "total_tokens": 16}
    backend = LangChainBackend.from_model(fake(AIMessage(content="It ships today.", usage_metadata=usage)))
    completion = await backend.generate(PROMPT, timeout=5)
    assert completion.text == "It ships today."
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (12, 4)
    assert completion.backend == "langchain:GenericFakeChatModel"


async def test_messages_are_converted() -> None:
    Recording.seen = []
    backend = LangChainBackend.from_model(Recording(messages=iter([AIMessage(content="ok")])), name="rec")
    events = [e async for e in backend.stream(PROMPT, timeout=5)]
    assert isinstance(events[-1], Done) and backend.spec == "langchain:rec"
    sent = Recording.seen[0]
    assert [type(m) for m in sent] == [SystemMessage, AIMessage, HumanMessage]
    assert sent[2].content == "Where is my order?"


async def test_stream_yields_deltas_and_estimates_usage_when_unreported() -> None:
    backend = LangChainBackend.from_model(fake(AIMessage(content="Your order ships today")))
    events = [e async for e in backend.stream(PROMPT, timeout=5)]
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    assert len(deltas) > 1 and "".join(deltas) == "Your order ships today"
    done = events[-1]
    assert isinstance(done, Done) and done.completion.text == "Your order ships today"
    assert done.completion.usage.prompt_tokens > 0 and done.completion.usage.completion_tokens > 0


class Failing(GenericFakeChatModel):
    error: Exception = RuntimeError("boom")

    async def _agenerate(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error

    async def _astream(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        raise self.error
        yield  # pragma: no cover


class Slow(GenericFakeChatModel):
    async def _agenerate(self, *args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(5)


async def test_errors_become_backend_errors() -> None:
    backend = LangChainBackend.from_model(Failing(messages=iter([])))
    with pytest.raises(BackendError, match="RuntimeError: boom") as info:
        await backend.generate(PROMPT, timeout=5)
    assert isinstance(info.value.__cause__, RuntimeError)
    with pytest.raises(BackendError):
        async for _ in backend.stream(PROMPT, timeout=5):
            pass

    flaky = Failing(messages=iter([]))
    flaky.error = ConnectionError("reset by peer")
    with pytest.raises(BackendUnavailable):
        await LangChainBackend.from_model(flaky).generate(PROMPT, timeout=5)


async def test_timeout() -> None:
    with pytest.raises(BackendTimeout):
        await LangChainBackend.from_model(Slow(messages=iter([]))).generate(PROMPT, timeout=0.1)


@pytest.fixture
def factory_module() -> Iterator[str]:
    module = types.ModuleType("botkit_test_lc_models")
    module.__spec__ = importlib.machinery.ModuleSpec(module.__name__, None)
    module.support_model = lambda: fake(AIMessage(content="from the factory"))  # type: ignore[attr-defined]
    module.not_a_model = lambda: "nope"  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    try:
        yield module.__name__
    finally:
        del sys.modules[module.__name__]


async def test_from_config_with_a_factory(factory_module: str) -> None:
    backend = create_backend(f"langchain:{factory_module}:support_model", BotConfig())
    assert isinstance(backend, LangChainBackend)
    assert (await backend.generate(PROMPT, timeout=5)).text == "from the factory"
    with pytest.raises(ConfigError, match="not a LangChain chat model"):
        create_backend(f"langchain:{factory_module}:not_a_model", BotConfig())


def test_bad_specs_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="expected"):
        create_backend("langchain:just-a-name", BotConfig())
    with pytest.raises(ConfigError):
        create_backend("langchain:no-such-provider:some-model", BotConfig())
