"""The ``langchain`` backend: any LangChain chat model (``BaseChatModel``).

From config, the part after ``langchain:`` is either

- ``<module>:<factory>``: when ``<module>`` is importable and has ``<factory>``, it is
  called with no arguments and must return a chat model (for your own wiring:
  ``langchain:myapp.models:support_model``); or
- ``<provider>:<model>``: passed to ``init_chat_model(model, model_provider=provider)``
  from the ``langchain`` package (or ``langchain_classic``), e.g.
  ``langchain:anthropic:claude-3-5-haiku-latest``; the provider's integration package
  must be installed.

In code, :meth:`LangChainBackend.from_model` wraps a ready chat model. The chat model is
built when the backend is (constructors of LangChain chat models do no network I/O).
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import warnings
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from botkit.backends.base import (
    Backend,
    Completion,
    Done,
    Prompt,
    StreamEvent,
    TextDelta,
    Usage,
    backend_error,
    estimate_prompt_tokens,
    parse_citations,
)
from botkit.errors import BackendError, BackendTimeout, BackendUnavailable, ConfigError

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from botkit.config import BotConfig


class LangChainBackend(Backend):
    """Calls a LangChain chat model with ``ainvoke`` / ``astream``."""

    kind = "langchain"
    supports_streaming = True
    needs_network = True

    def __init__(self, *, model: str, options: BaseModel | None = None, config: BotConfig | None = None,
                 chat_model: BaseChatModel | None = None) -> None:
        super().__init__(model=model, options=options, config=config)
        self.chat_model = chat_model if chat_model is not None else _build(model)

    @classmethod
    def from_model(cls, chat_model: BaseChatModel, *, name: str | None = None) -> LangChainBackend:
        """Wrap a ready chat model; ``name`` (default: its class name) goes into the spec."""
        return cls(model=name or type(chat_model).__name__, chat_model=chat_model)

    async def generate(self, prompt: Prompt, *, timeout: float) -> Completion:
        """``ainvoke`` within ``timeout``; usage from ``usage_metadata`` when reported."""
        try:
            message = await asyncio.wait_for(self.chat_model.ainvoke(_to_langchain(prompt)), timeout)
        except BackendError:
            raise
        except Exception as exc:  # the boundary: any integration's error becomes a BackendError
            raise self._translate(exc, timeout) from exc
        text = _text_of(message.content)
        return self._completion(prompt, text, getattr(message, "usage_metadata", None))

    async def stream(self, prompt: Prompt, *, timeout: float) -> AsyncIterator[StreamEvent]:
        """``astream`` chunk by chunk; the deadline covers the whole stream."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        parts: list[str] = []
        usage: dict[str, int] | None = None
        iterator = self.chat_model.astream(_to_langchain(prompt)).__aiter__()
        try:
            while True:
                try:
                    chunk = await asyncio.wait_for(iterator.__anext__(), max(0.0, deadline - loop.time()))
                except StopAsyncIteration:
                    break
                reported = getattr(chunk, "usage_metadata", None)
                if reported:  # LangChain reports usage per chunk, to be summed
                    usage = usage or {"input_tokens": 0, "output_tokens": 0}
                    usage["input_tokens"] += int(reported.get("input_tokens") or 0)
                    usage["output_tokens"] += int(reported.get("output_tokens") or 0)
                piece = _text_of(chunk.content)
                if piece:
                    parts.append(piece)
                    yield TextDelta(piece)
        except BackendError:
            raise
        except Exception as exc:  # the boundary, as in generate
            error = self._translate(exc, timeout)
            error.partial_text = "".join(parts)  # type: ignore[attr-defined]
            raise error from exc
        finally:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                await aclose()
        yield Done(self._completion(prompt, "".join(parts), usage))

    def _completion(self, prompt: Prompt, text: str, usage: Any) -> Completion:
        if usage:
            counted = Usage(int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0))
        else:
            counted = Usage(estimate_prompt_tokens(self, prompt.messages), self.count_tokens(text))
        return Completion(text, counted, self.spec, cited=parse_citations(text, len(prompt.passages)))

    def _translate(self, exc: BaseException, timeout: float) -> BackendError:
        if isinstance(exc, (TimeoutError, asyncio.TimeoutError)) or "timeout" in type(exc).__name__.lower():
            return backend_error(BackendTimeout, f"{self.spec}: no reply within {timeout:.1f}s", retryable=True)
        status = getattr(exc, "status_code", None) or getattr(getattr(exc, "response", None), "status_code", None)
        transient = isinstance(exc, (ConnectionError, OSError)) or (
            isinstance(status, int) and (status in (408, 409, 429) or status >= 500)
        )
        cls = BackendUnavailable if transient else BackendError
        return backend_error(cls, f"{self.spec}: {type(exc).__name__}: {exc}", retryable=transient)


def _build(target: str) -> BaseChatModel:
    """Resolve ``module:factory`` or ``provider:model`` (see the module docstring)."""
    left, sep, right = target.partition(":")
    if not sep or not left or not right:
        raise ConfigError(
            f"langchain backend {target!r}: expected 'langchain:<provider>:<model>' or 'langchain:<module>:<factory>'"
        )
    try:
        from langchain_core.language_models import BaseChatModel
    except ImportError as exc:
        raise ConfigError("the langchain backend needs langchain-core", hint="pip install 'botkit[langchain]'") from exc
    factory = _import_factory(left, right)
    if factory is not None:
        built = factory()
    else:
        init_chat_model = _init_chat_model(target)
        try:
            with warnings.catch_warnings():  # langchain_classic's copy warns that it moved
                warnings.simplefilter("ignore", DeprecationWarning)
                built = init_chat_model(right, model_provider=left)
        except (ImportError, ValueError) as exc:
            raise ConfigError(f"langchain backend {target!r}: {exc}") from exc
    if not isinstance(built, BaseChatModel):
        raise ConfigError(f"langchain backend {target!r}: got {type(built).__name__}, not a LangChain chat model")
    return built


def _import_factory(module: str, name: str) -> Any:
    try:
        if importlib.util.find_spec(module) is None:
            return None
    except (ImportError, ValueError):
        return None
    factory = getattr(importlib.import_module(module), name, None)
    return factory if callable(factory) else None


def _init_chat_model(target: str) -> Any:
    for module in ("langchain.chat_models", "langchain_classic.chat_models"):
        try:
            return importlib.import_module(module).init_chat_model
        except (ImportError, AttributeError):
            continue
    raise ConfigError(
        f"langchain backend {target!r}: no importable factory of that name, and 'provider:model' needs the langchain package",
        hint="pip install langchain",
    )


def _to_langchain(prompt: Prompt) -> list[Any]:
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

    kinds = {"system": SystemMessage, "user": HumanMessage, "assistant": AIMessage}
    return [kinds[m.role](content=m.content) for m in prompt.messages]


def _text_of(content: Any) -> str:
    """Text of a message's content: a string, or a list of text blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(b if isinstance(b, str) else str(b.get("text", "")) for b in content
                       if isinstance(b, str) or (isinstance(b, dict) and b.get("type", "text") == "text"))
    return ""


__all__ = ["LangChainBackend"]
