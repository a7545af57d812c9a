"""The openai backend with the real ``openai`` client against a local stub server."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from types import SimpleNamespace

import pytest

from botkit.backends.base import ChatMessage, Done, Prompt, TextDelta
from botkit.backends.openai_backend import OpenAIBackend, _completion_json, _retry_after
from botkit.backends.scripted import ScriptedBackend
from botkit.config import BotConfig
from botkit.errors import BackendError, BackendTimeout, BackendUnavailable, ConfigError
from botkit.router import Router
from knowledge.types import Passage
from tests.helpers.openai_stub import OpenAIStub, StubReply

PASSAGE = Passage("c1", "password.md", "Passwords", "", "Reset it from the sign-in page.", 0.9)
PROMPT = Prompt(
    [ChatMessage("system", "Answer from the sources. [1] Reset it from the sign-in page."),
     ChatMessage("user", "How do I reset my password?")],
    "How do I reset my password?",
    [PASSAGE],
    max_tokens=64,
)


@pytest.fixture
def stub() -> Iterator[OpenAIStub]:
    with OpenAIStub() as server:
        yield server


MakeBackend = Callable[..., OpenAIBackend]


@pytest.fixture
async def make_backend(stub: OpenAIStub) -> AsyncIterator[MakeBackend]:
    """Backends on the stub server (``openai.*`` settings as keywords), closed when the test
    ends: an unclosed openai client closes itself when collected, in whatever event loop
    runs then, which is a later test's, and logs an error there."""
    made: list[OpenAIBackend] = []

    def build(**settings: object) -> OpenAIBackend:
        openai = {"api_key": "sk-test", "base_url": stub.base_url, **settings}
        made.append(OpenAIBackend(model="gpt-4o-mini", config=BotConfig.model_validate({"openai": openai})))
        return made[-1]

    yield build
    for backend in made:
        await backend.aclose()


async def test_generate(stub: OpenAIStub, make_backend: MakeBackend) -> None:
    stub.enqueue(StubReply(text="Use the sign-in page [1]."))
    backend = make_backend(temperature=0.3)
    completion = await backend.generate(PROMPT, timeout=5)
    await backend.aclose()
    assert completion.text == "Use the sign-in page [1]."
    assert completion.backend == "openai:gpt-4o-mini"
    assert completion.cited == (1,)
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (11, 5)
    request = stub.chat_requests[0]
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.body["model"] == "gpt-4o-mini"
    assert request.body["max_tokens"] == 64 and request.body["temperature"] == 0.3
    assert request.body["messages"][1] == {"role": "user", "content": "How do I reset my password?"}



async def test_requests_are_exactly_what_the_clients_create_sends(stub: OpenAIStub, make_backend: MakeBackend) -> None:
    """The backend posts through the official client's ``post`` (skipping ``create``'s
    per-call parameter transform): path, JSON body and auth must stay ``create``'s own."""
    backend = make_backend(temperature=0.3)
    await backend.generate(PROMPT, timeout=5)
    [event async for event in backend.stream(PROMPT, timeout=5)]
    client = backend._get_client()
    await client.chat.completions.create(**backend._request(PROMPT), timeout=5)
    chunks = await client.chat.completions.create(
        **backend._request(PROMPT), stream=True, stream_options={"include_usage": True}, timeout=5
    )
    [chunk async for chunk in chunks]
    await backend.aclose()
    ours, theirs = stub.chat_requests[:2], stub.chat_requests[2:]
    assert len(ours) == len(theirs) == 2
    for mine, official in zip(ours, theirs):
        assert (mine.method, mine.path, mine.body) == (official.method, official.path, official.body)
        for header in ("authorization", "content-type", "accept"):
            assert mine.headers.get(header) == official.headers.get(header)


def test_a_completion_body_is_read_strictly() -> None:
    body = b'{"choices": [{"message": {"role": "assistant", "content": "Hi [1]"}}], "usage": {"prompt_tokens": 7, "completion_tokens": 2}}'
    text, usage = _completion_json(body, "openai:m")
    assert text == "Hi [1]" and (usage.prompt_tokens, usage.completion_tokens) == (7, 2)
    assert _completion_json(b'{"choices": [{"message": {"content": null}}]}', "openai:m") == ("", None)
    assert _completion_json(b'{"choices": []}', "openai:m") == ("", None)
    for garbage in (b"<html>bad gateway</html>", b"[1, 2]", b'{"choices": [{"message": "hi"}]}',
                    b'{"choices": [{"message": {"content": 42}}]}', b"\xff"):
        with pytest.raises(BackendError, match="openai:m: the server's reply") as raised:
            _completion_json(garbage, "openai:m")
        assert not raised.value.retryable

async def test_stream_with_usage(stub: OpenAIStub, make_backend: MakeBackend) -> None:
    stub.enqueue(StubReply(text="One two three.", prompt_tokens=42))
    backend = make_backend()
    events = [e async for e in backend.stream(PROMPT, timeout=5)]
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    assert "".join(deltas) == "One two three." and len(deltas) == 3
    done = events[-1]
    assert isinstance(done, Done)
    assert done.completion.text == "One two three."
    assert (done.completion.usage.prompt_tokens, done.completion.usage.completion_tokens) == (42, 3)
    body = stub.chat_requests[0].body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


async def test_stream_from_a_server_that_ignores_include_usage(stub: OpenAIStub, make_backend: MakeBackend) -> None:
    stub.enqueue(StubReply(text="Estimated usage.", usage_in_stream=False))
    events = [e async for e in make_backend().stream(PROMPT, timeout=5)]
    usage = events[-1].completion.usage  # type: ignore[union-attr]
    assert usage.prompt_tokens > 10 and usage.completion_tokens > 0


async def test_rate_limit_is_retried_after_retry_after(stub: OpenAIStub, make_backend: MakeBackend) -> None:
    stub.enqueue(StubReply.rate_limited(retry_after="1"), StubReply(text="after the wait"))
    completion = await make_backend().generate(PROMPT, timeout=5)
    assert completion.text == "after the wait"
    first, second = stub.chat_requests
    assert 0.95 <= second.received_at - first.received_at < 2.5


async def test_retry_after_longer_than_the_deadline_fails_at_once(stub: OpenAIStub, make_backend: MakeBackend) -> None:
    stub.enqueue(StubReply.rate_limited(retry_after="30"))
    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match="429"):
        await make_backend().generate(PROMPT, timeout=3)
    assert time.monotonic() - started < 1.0
    assert len(stub.chat_requests) == 1


async def test_server_errors_are_retried_then_the_router_falls_back(
        stub: OpenAIStub, make_backend: MakeBackend) -> None:
    fast = {"Retry-After": "0"}
    stub.enqueue(*[StubReply(status=500, error_message="boom", headers=fast) for _ in range(3)])
    backend = make_backend(max_retries=2)
    with pytest.raises(BackendUnavailable, match="HTTP 500: boom") as info:
        await backend.generate(PROMPT, timeout=5)
    assert info.value.retryable is True  # type: ignore[attr-defined]
    assert len(stub.chat_requests) == 3

    stub.enqueue(*[StubReply(status=503, error_message="overloaded", headers=fast) for _ in range(3)])
    fallback = ScriptedBackend(model="fallback")
    fallback.enqueue("from the fallback")
    completion = await Router([backend, fallback], turn_timeout=10).generate(PROMPT)
    assert completion.backend == "scripted:fallback"
    assert len(stub.chat_requests) == 6


async def test_insufficient_quota_is_not_retried(stub: OpenAIStub, make_backend: MakeBackend) -> None:
    stub.enqueue(StubReply.insufficient_quota())
    with pytest.raises(BackendUnavailable, match="quota") as info:
        await make_backend().generate(PROMPT, timeout=5)
    assert info.value.retryable is False  # type: ignore[attr-defined]
    assert "exceeded your current quota" in str(info.value)
    assert len(stub.chat_requests) == 1


async def test_bad_request_is_not_retried(stub: OpenAIStub, make_backend: MakeBackend) -> None:
    stub.enqueue(StubReply(status=400, error_message="context_length_exceeded", error_type="invalid_request_error"))
    with pytest.raises(BackendError, match="HTTP 400") as info:
        await make_backend().generate(PROMPT, timeout=5)
    assert not isinstance(info.value, BackendUnavailable)
    assert len(stub.chat_requests) == 1


async def test_hang_mid_stream_times_out_within_the_deadline(stub: OpenAIStub, make_backend: MakeBackend) -> None:
    stub.enqueue(StubReply.hang(after_chunks=2, text="one two three four"))
    backend = make_backend()
    seen = []
    started = time.monotonic()
    with pytest.raises(BackendTimeout) as info:
        async for event in backend.stream(PROMPT, timeout=1.0):
            seen.append(event)
    assert time.monotonic() - started < 1.0 + 0.5
    assert "".join(e.text for e in seen) == "one two "
    assert info.value.partial_text == "one two "  # type: ignore[attr-defined]


async def test_slow_server_times_out_within_the_deadline(stub: OpenAIStub, make_backend: MakeBackend) -> None:
    stub.enqueue(StubReply(delay_s=5))
    started = time.monotonic()
    with pytest.raises(BackendTimeout):
        await make_backend().generate(PROMPT, timeout=0.8)
    assert time.monotonic() - started < 0.8 + 0.5


async def test_connection_closed(stub: OpenAIStub, make_backend: MakeBackend) -> None:
    stub.enqueue(StubReply.drop(after_chunks=0))
    with pytest.raises(BackendUnavailable, match="connection failed"):
        await make_backend(max_retries=0).generate(PROMPT, timeout=5)

    stub.enqueue(StubReply.drop(after_chunks=2, text="cut off right here"))
    seen = []
    with pytest.raises(BackendError) as info:
        async for event in make_backend().stream(PROMPT, timeout=5):
            seen.append(event)
    assert info.value.partial_text == "cut off "  # type: ignore[attr-defined]
    assert len(stub.chat_requests) == 2  # no retry once text was streamed


async def test_dropped_connection_is_retried(stub: OpenAIStub, make_backend: MakeBackend) -> None:
    stub.enqueue(StubReply.drop(after_chunks=0), StubReply(text="second try"))
    completion = await make_backend(max_retries=1).generate(PROMPT, timeout=5)
    assert completion.text == "second try"


def test_missing_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="set OPENAI_API_KEY or openai.api_key in bot.yaml"):
        OpenAIBackend(model="gpt-4o-mini", config=BotConfig())


async def test_base_url_without_key_sends_a_placeholder(stub: OpenAIStub) -> None:
    config = BotConfig.model_validate({"openai": {"base_url": stub.base_url}})
    backend = OpenAIBackend(model="llama3", config=config)
    completion = await backend.generate(PROMPT, timeout=5)
    await backend.aclose()
    assert completion.text == "Hello from the stub."
    assert stub.chat_requests[0].headers["authorization"].startswith("Bearer ")


def test_retry_after_parsing() -> None:
    def error(headers: dict[str, str]) -> SimpleNamespace:
        return SimpleNamespace(response=SimpleNamespace(headers=headers))

    assert _retry_after(error({"retry-after": "2"})) == 2.0
    assert _retry_after(error({"retry-after-ms": "250", "retry-after": "9"})) == 0.25
    later = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=5), usegmt=True)
    assert 3.0 <= (_retry_after(error({"retry-after": later})) or 0) <= 5.0
    assert _retry_after(error({"retry-after": "soon"})) is None
    assert _retry_after(error({})) is None
    assert _retry_after(ValueError()) is None


def test_context_window_and_token_counting() -> None:
    config = BotConfig.model_validate({"openai": {"api_key": "k"}})
    assert OpenAIBackend(model="gpt-4o-mini", config=config).max_context_tokens == 128_000
    assert OpenAIBackend(model="my-local-llama", config=config).max_context_tokens == 8_192
    assert OpenAIBackend(model="gpt-4o-mini", config=config).count_tokens("Hello there") > 0
