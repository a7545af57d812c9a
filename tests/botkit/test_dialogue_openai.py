"""Turns through the real openai backend against a local OpenAI-compatible server with faults."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from botkit.backends.registry import create_backend
from botkit.bot import Bot
from botkit.dialogue import FAILURE_TEXT
from botkit.messages import ReplyDelta, ReplyDone
from tests.helpers.openai_stub import OpenAIStub, StubReply

BotFactory = Callable[..., Bot]


@pytest.fixture
def stub() -> Iterator[OpenAIStub]:
    with OpenAIStub() as server:
        yield server


def _bot(make_bot: BotFactory, stub: OpenAIStub, *, fallback: bool, timeout_s: float = 3.0) -> Bot:
    probe = make_bot()
    config = probe.config.model_copy(
        update={
            "openai": probe.config.openai.model_copy(
                update={"base_url": stub.base_url, "api_key": "test-key", "timeout_s": timeout_s, "max_retries": 2}
            )
        }
    )
    chain = ["openai:stub-model", "extractive"] if fallback else ["openai:stub-model"]
    return Bot(config, backends=[create_backend(spec, config) for spec in chain])


async def test_grounded_answer_from_the_model(make_bot: BotFactory, stub: OpenAIStub) -> None:
    stub.enqueue(StubReply(text="Annual refunds are possible within 30 days [1]."))
    async with _bot(make_bot, stub, fallback=True) as bot:
        reply = await bot.reply("oa-1", "Can I get a refund?")
    assert reply.backend == "openai:stub-model"
    assert reply.citations[0].source == "faq.csv#refund"
    request = stub.chat_requests[-1].body
    system = request["messages"][0]["content"]
    assert "<sources>" in system and "Settings > Billing" in system
    assert request["messages"][-1] == {"role": "user", "content": "Can I get a refund?"}


async def test_rate_limit_is_retried_after_retry_after(make_bot: BotFactory, stub: OpenAIStub) -> None:
    stub.enqueue(StubReply.rate_limited(retry_after="1"), StubReply(text="Done [1]."))
    async with _bot(make_bot, stub, fallback=True) as bot:
        started = time.monotonic()
        reply = await bot.reply("oa-2", "How do I export my data?")
    assert reply.backend == "openai:stub-model" and reply.text == "Done [1]."
    assert time.monotonic() - started >= 0.9


async def test_server_errors_fall_back_to_extractive(make_bot: BotFactory, stub: OpenAIStub) -> None:
    stub.enqueue(*(StubReply.server_error() for _ in range(3)))
    async with _bot(make_bot, stub, fallback=True) as bot:
        reply = await bot.reply("oa-3", "How do I export my data?")
        assert reply.backend == "extractive" and "Export" in reply.text
        assert [m.role for m in await bot.history("oa-3")] == ["user", "assistant"]


async def test_hang_mid_stream_ends_within_the_deadline(make_bot: BotFactory, stub: OpenAIStub) -> None:
    stub.enqueue(StubReply.hang(after_chunks=2, hang_s=30))
    async with _bot(make_bot, stub, fallback=False, timeout_s=1.5) as bot:
        started = time.monotonic()
        events = [e async for e in bot.stream("oa-4", "How do I export my data?")]
        elapsed = time.monotonic() - started
        assert elapsed < 1.5 + 2.0
        assert any(isinstance(e, ReplyDelta) for e in events)
        done = events[-1]
        assert isinstance(done, ReplyDone) and done.reply.text == FAILURE_TEXT
        stub.enqueue(StubReply(text="Back again [1]."))
        assert (await bot.reply("oa-4", "Can I get a refund?")).text == "Back again [1]."  # not left locked


async def test_dropped_connection_falls_back(make_bot: BotFactory, stub: OpenAIStub) -> None:
    stub.enqueue(*(StubReply.drop(after_chunks=0) for _ in range(3)))
    async with _bot(make_bot, stub, fallback=True) as bot:
        reply = await bot.reply("oa-5", "Can I get a refund?")
    assert reply.backend == "extractive" and "30 days" in reply.text


async def test_insufficient_quota_is_not_retried(make_bot: BotFactory, stub: OpenAIStub) -> None:
    stub.enqueue(StubReply.insufficient_quota())
    async with _bot(make_bot, stub, fallback=True) as bot:
        reply = await bot.reply("oa-6", "Can I get a refund?")
    assert reply.backend == "extractive"
    assert len(stub.chat_requests) == 1
