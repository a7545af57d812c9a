"""The ``openai`` backend: the OpenAI API or any OpenAI-compatible server.

Spec ``openai:<model>``; settings come from the ``openai:`` section of ``bot.yaml``
(:class:`~botkit.config.OpenAISettings`). ``base_url`` points it at vLLM, Ollama, TGI or
LiteLLM; a base URL without a key is allowed (local servers) and sends a placeholder key.

Every call has one deadline covering connection, retries and a stream to its last byte.
The client's own retries are off (``max_retries=0``): this module retries 408/409/429,
5xx, timeouts and dropped connections itself, up to ``max_retries`` times, honouring
``Retry-After`` (seconds or an HTTP date) and giving up at once when the wait would pass
the deadline. ``insufficient_quota`` and other 4xx are not retried. A stream is only
retried before its first text.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, TypeVar

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
    is_retryable,
    parse_citations,
)
from botkit._aio import within
from botkit.config import OpenAISettings
from botkit.errors import BackendError, BackendTimeout, BackendUnavailable, ConfigError
from botkit.tokens import approx_tokens, tiktoken_counter

if TYPE_CHECKING:
    import openai

    from botkit.config import BotConfig

DEFAULT_BASE_URL = "https://api.openai.com/v1"
PLACEHOLDER_KEY = "not-needed"
_RETRY_STATUS = {408, 409, 429}
_CONTEXT = (("gpt-4o", 128_000), ("gpt-4.1", 1_000_000), ("gpt-4-turbo", 128_000), ("gpt-5", 272_000),
            ("o1", 200_000), ("o3", 200_000), ("o4", 200_000), ("gpt-4", 8_192), ("gpt-3.5-turbo", 16_385))
T = TypeVar("T")


class OpenAIBackend(Backend):
    """Chat completions through the official ``openai`` client (``AsyncOpenAI``)."""

    kind = "openai"
    supports_streaming = True
    needs_network = True
    Options = OpenAISettings
    options: OpenAISettings

    def __init__(self, *, model: str, options: OpenAISettings | None = None, config: BotConfig | None = None) -> None:
        super().__init__(model=model, options=options, config=config)
        if not model:
            raise ConfigError("the openai backend needs a model name, e.g. 'openai:gpt-4o-mini'")
        if not self.options.api_key and not self.options.base_url:
            raise ConfigError("the openai backend has no API key: set OPENAI_API_KEY or openai.api_key in bot.yaml")
        self.timeout_s = self.options.timeout_s
        self.max_context_tokens = next((n for prefix, n in _CONTEXT if model.startswith(prefix)), 8_192)  # type: ignore[misc]
        self._client: openai.AsyncOpenAI | None = None
        self._chunks: type | None = None  # AsyncStream[ChatCompletionChunk]
        self._counter: Callable[[str], int] | None | bool = False  # False: not looked up yet

    @classmethod
    def options_from_config(cls, config: BotConfig | None) -> OpenAISettings:
        """The ``openai:`` section of the bot config (defaults without a config)."""
        return config.openai if config is not None else OpenAISettings()

    def _get_client(self) -> openai.AsyncOpenAI:
        if self._client is None:
            try:
                import openai
            except ImportError as exc:
                raise ConfigError("the openai backend needs the openai package", hint="pip install 'botkit[openai]'") from exc
            self._client = openai.AsyncOpenAI(
                api_key=self.options.api_key or PLACEHOLDER_KEY,
                base_url=self.options.base_url or DEFAULT_BASE_URL,
                organization=self.options.organization,
                max_retries=0,
                timeout=self.options.timeout_s,
            )
        return self._client

    def _create(self, client: openai.AsyncOpenAI, body: dict[str, Any], remaining: float, *, stream: bool = False) -> Any:
        """``client.chat.completions.create(**body, timeout=remaining)`` through the client's
        own ``post``: the same request (path, JSON body, bearer auth, timeout) and the same
        parsed response or ``AsyncStream``, without the per-call transform of ``create``'s
        typed parameters, which walks every message (a fifth of a turn's time in profiles).
        ``body`` holds only plain JSON values, which that transform would leave unchanged.

        A non-streamed reply comes back as the body's bytes (``cast_to=bytes``; read it with
        :func:`_completion_json`): building the typed ``ChatCompletion`` model cost more
        than reading the two fields botkit uses. Status errors are raised by the client
        either way."""
        if self._chunks is None:
            from openai import AsyncStream
            from openai.types.chat import ChatCompletionChunk

            self._chunks = AsyncStream[ChatCompletionChunk]
        options: Any = {"timeout": remaining, "security": {"bearer_auth": True}}
        return client.post("/chat/completions", body=body, cast_to=bytes, options=options,
                           stream=stream, stream_cls=self._chunks)

    def count_tokens(self, text: str) -> int:
        """tiktoken's count when its encoding is cached locally, else the estimate."""
        if self._counter is False:
            self._counter = tiktoken_counter(self.model)
        counter = self._counter
        return counter(text) if callable(counter) else approx_tokens(text)

    def _request(self, prompt: Prompt) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in prompt.messages],
            "max_tokens": prompt.max_tokens or self.options.max_tokens,
            "temperature": self.options.temperature,
        }

    async def generate(self, prompt: Prompt, *, timeout: float) -> Completion:
        """One chat completion within ``timeout`` seconds, retrying transient failures."""
        deadline = asyncio.get_running_loop().time() + timeout
        client = self._get_client()
        request = self._request(prompt)

        async def once(remaining: float) -> Completion:
            text, reported = _completion_json(await self._create(client, request, remaining), self.spec)
            usage = self._usage(prompt, text, reported)
            return Completion(text, usage, self.spec, cited=parse_citations(text, len(prompt.passages)))

        return await self._retrying(once, deadline, timeout)

    async def stream(self, prompt: Prompt, *, timeout: float) -> AsyncIterator[StreamEvent]:
        """Stream a chat completion; the deadline covers the stream to its end."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        client = self._get_client()
        request = {**self._request(prompt), "stream": True, "stream_options": {"include_usage": True}}
        stream = await self._retrying(lambda remaining: self._create(client, request, remaining, stream=True),
                                      deadline, timeout)
        parts: list[str] = []
        reported: Any = None
        iterator = stream.__aiter__()
        try:
            while True:
                remaining = deadline - loop.time()
                try:
                    chunk = await within(iterator.__anext__(), max(remaining, 0.0))
                except StopAsyncIteration:
                    break
                if getattr(chunk, "usage", None) is not None:
                    reported = chunk.usage
                for choice in chunk.choices or ():
                    piece = choice.delta.content if choice.delta else None
                    if piece:
                        parts.append(piece)
                        yield TextDelta(piece)
        except Exception as exc:  # translated; a bug (non-client error) is re-raised by _translate
            error = self._translate(exc, timeout)
            error.partial_text = "".join(parts)  # type: ignore[attr-defined]
            raise error from exc
        finally:
            await _close_quietly(stream)
        text = "".join(parts)
        usage = self._usage(prompt, text, reported)
        yield Done(Completion(text, usage, self.spec, cited=parse_citations(text, len(prompt.passages))))

    def _usage(self, prompt: Prompt, text: str, reported: Any) -> Usage:
        if reported is not None and getattr(reported, "prompt_tokens", None) is not None:
            return Usage(int(reported.prompt_tokens), int(reported.completion_tokens or 0))
        # The server ignored include_usage (or sent none): estimate.
        return Usage(estimate_prompt_tokens(self, prompt.messages), self.count_tokens(text))

    async def _retrying(self, call: Callable[[float], Awaitable[T]], deadline: float, timeout: float) -> T:
        loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise backend_error(BackendTimeout, f"{self.spec}: no reply within {timeout:.1f}s", retryable=True)
            try:
                return await within(call(remaining), remaining)
            except Exception as exc:  # translated below; non-client errors are re-raised
                error = self._translate(exc, timeout)
                wait = _retry_after(exc)
                if wait is None:
                    wait = min(8.0, 0.5 * 2**attempt) * (0.5 + random.random() / 2)
                can_retry = is_retryable(error) and attempt < self.options.max_retries
                if not can_retry or loop.time() + wait >= deadline:
                    raise error from exc
                attempt += 1
                await asyncio.sleep(wait)

    def _translate(self, exc: BaseException, timeout: float) -> BackendError:
        """Map a client error to a botkit error with the server's message."""
        import openai

        name = self.spec
        if isinstance(exc, (TimeoutError, asyncio.TimeoutError, openai.APITimeoutError)):
            return backend_error(BackendTimeout, f"{name}: no reply within {timeout:.1f}s", retryable=True)
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            message = _server_message(exc)
            if status == 429 and exc.code == "insufficient_quota":
                return backend_error(BackendUnavailable, f"{name}: quota exhausted (429 insufficient_quota): {message}",
                                     retryable=False, hint="check the account's plan and billing")
            if status in (401, 403):
                return backend_error(BackendUnavailable, f"{name}: access denied ({status}): {message}", retryable=False,
                                     hint="check OPENAI_API_KEY or openai.api_key in bot.yaml")
            if status in _RETRY_STATUS or status >= 500:
                return backend_error(BackendUnavailable, f"{name}: HTTP {status}: {message}", retryable=True)
            return backend_error(BackendError, f"{name}: request rejected (HTTP {status}): {message}", retryable=False)
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__ or exc.__context__
            detail = f" ({type(cause).__name__}: {cause})" if cause else ""
            return backend_error(BackendUnavailable, f"{name}: connection failed{detail}", retryable=True)
        if isinstance(exc, openai.OpenAIError):
            return backend_error(BackendError, f"{name}: {type(exc).__name__}: {exc}", retryable=False)
        if isinstance(exc, OSError):
            return backend_error(BackendUnavailable, f"{name}: connection failed ({exc})", retryable=True)
        raise exc  # a bug, not a backend failure: let it surface

    async def aclose(self) -> None:
        """Close the HTTP client (the backend can be used again: it reopens)."""
        client, self._client = self._client, None
        if client is not None:
            await client.close()


def _completion_json(body: bytes, name: str) -> tuple[str, Any]:
    """The text and the reported usage (or ``None``) of a chat completion's JSON body."""
    try:
        data = json.loads(body)
        choices = data.get("choices") or []
        text = (choices[0].get("message") or {}).get("content") or "" if choices else ""
        usage = data.get("usage")
        reported = SimpleNamespace(**usage) if isinstance(usage, dict) else None
    except (ValueError, AttributeError, TypeError, IndexError) as exc:
        raise backend_error(
            BackendError, f"{name}: the server's reply is not a chat completion ({type(exc).__name__}: {exc})",
            retryable=False,
        ) from exc
    if not isinstance(text, str):
        raise backend_error(BackendError, f"{name}: the server's reply has no text content", retryable=False)
    return text, reported


def _server_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"]
    return exc.message


def _retry_after(exc: BaseException) -> float | None:
    """Seconds to wait from ``retry-after-ms`` / ``Retry-After`` (seconds or HTTP date)."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    try:
        millis = headers.get("retry-after-ms")
        if millis is not None:
            return max(0.0, float(millis) / 1000)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            when = parsedate_to_datetime(value)
            if when.tzinfo is None:
                when = when.replace(tzinfo=timezone.utc)
            return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
    except (TypeError, ValueError):
        return None


async def _close_quietly(stream: Any) -> None:
    close = getattr(stream, "close", None)
    if close is not None:
        try:
            await asyncio.shield(close())
        except Exception:  # noqa: BLE001 - best effort on an already failed stream
            pass


__all__ = ["DEFAULT_BASE_URL", "OpenAIBackend"]
