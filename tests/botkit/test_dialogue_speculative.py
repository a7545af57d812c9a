"""Speculative retrieval: a turn starts retrieving its message beside the store's work.

The turn uses that result when the message needs no context from earlier messages, and
retrieves again, with the context, when it is a follow-up. Real Bot, store and index.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
from collections.abc import Callable

import pytest

from botkit.backends.scripted import ScriptedBackend
from botkit.bot import Bot
from knowledge.errors import IndexUnavailable
from knowledge.retriever import Retriever

BotFactory = Callable[..., Bot]


class Retrievals(list[str]):
    """The queries of the recorded Retriever.retrieve calls, in call order; ``messages``
    holds each call's ``message`` argument."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str | None] = []


@pytest.fixture
def retrievals(monkeypatch: pytest.MonkeyPatch) -> Retrievals:
    """Every Retriever.retrieve call, recorded."""
    calls = Retrievals()
    lock = threading.Lock()
    original = Retriever.retrieve

    def recording(self: Retriever, query: str, **kwargs: object):  # type: ignore[no-untyped-def]
        with lock:
            calls.append(query)
            calls.messages.append(kwargs.get("message"))  # type: ignore[arg-type]
        return original(self, query, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Retriever, "retrieve", recording)
    return calls


async def test_a_standalone_question_is_retrieved_once(make_bot: BotFactory, retrievals: list[str]) -> None:
    scripted = ScriptedBackend()
    async with make_bot([scripted]) as bot:
        await bot.reply("spec-1", "  How much does the Pro plan cost per month? ")
        assert retrievals == ["How much does the Pro plan cost per month?"]
        assert scripted.prompts[-1].passages[0].source == "billing/plans.md"


async def test_a_follow_up_is_retrieved_again_with_its_context(make_bot: BotFactory, retrievals: Retrievals) -> None:
    scripted = ScriptedBackend()
    async with make_bot([scripted]) as bot:
        await bot.reply("spec-2", "How much does the Pro plan cost per month?")
        retrievals.clear()
        await bot.reply("spec-2", "and on annual billing?")
        assert retrievals[0] == "and on annual billing?"  # the speculative one, not used
        assert retrievals[1:] == ["How much does the Pro plan cost per month? and on annual billing?"]
        assert retrievals.messages[-1] == "and on annual billing?"  # only its own sentences may be tried alone
        assert scripted.prompts[-1].passages[0].source == "billing/plans.md"


async def test_turned_off_retrieves_only_after_the_lock(make_bot: BotFactory, retrievals: list[str]) -> None:
    async with make_bot([ScriptedBackend()], knowledge__speculative_retrieval=False) as bot:
        await bot.reply("spec-3", "How much does the Pro plan cost per month?")
        await bot.reply("spec-3", "and on annual billing?")
        assert retrievals == ["How much does the Pro plan cost per month?",
                              "How much does the Pro plan cost per month? and on annual billing?"]


async def test_an_unused_failed_speculation_leaves_no_unretrieved_error(
        make_bot: BotFactory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    async with make_bot([ScriptedBackend()]) as bot:
        conversation_id = await bot.new_conversation(channel="test")
        await bot.reply(conversation_id, "I want to talk to a human")  # hands off: the bot stays quiet
        calls = []

        def broken(self: Retriever, query: str, **kwargs: object) -> None:
            calls.append(query)
            raise IndexUnavailable("Chroma is down")

        monkeypatch.setattr(Retriever, "retrieve", broken)
        with caplog.at_level(logging.ERROR, logger="asyncio"):
            reply = await bot.reply(conversation_id, "Are you there?")
            await asyncio.sleep(0.05)
            gc.collect()
        assert reply.handoff and calls == ["Are you there?"]
        assert "never retrieved" not in caplog.text


async def test_a_failed_speculation_that_is_used_gives_the_knowledge_down_reply(
        make_bot: BotFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Retriever, query: str, **kwargs: object) -> None:
        raise IndexUnavailable("Chroma is down")

    monkeypatch.setattr(Retriever, "retrieve", broken)
    async with make_bot([ScriptedBackend()]) as bot:
        reply = await bot.reply("spec-5", "How much does the Pro plan cost per month?")
        assert reply.abstained and reply.backend is None
