"""The turn path's own costs: each prompt text counted once, shared leak filter, retrieval's thread pool."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

from botkit import metrics
from botkit.backends.scripted import ScriptedBackend
from botkit.bot import Bot
from botkit.dialogue import RETRIEVAL_WORKERS, retrieval_executor
from botkit.prompt import (
    GROUNDING_RULES,
    HistoryTurn,
    LeakGuard,
    build_prompt,
    leaks_instructions,
)
from botkit.tokens import approx_tokens
from knowledge.types import Passage

BotFactory = Callable[..., Bot]


def passage(number: int) -> Passage:
    return Passage(chunk_id=f"c{number}", source=f"faq.csv#q{number}", title=f"Question {number}", section="",
                   text=f"Answer number {number}: open Settings and choose option {number}.", score=0.8)


def test_build_prompt_counts_each_text_once() -> None:
    counted: Counter[str] = Counter()

    def count(text: str) -> int:
        counted[text] += 1
        return approx_tokens(text)

    history = [HistoryTurn("user", "How do I reset my password?"), HistoryTurn("assistant", "From the sign-in page [1].")]
    prompt = build_prompt(persona="You are Orbi.", question="And on mobile?", passages=[passage(1), passage(2)],
                          history=history, count_tokens=count, max_context_tokens=8000, max_reply_tokens=500)
    assert len(prompt.messages) == 4 and prompt.passages == [passage(1), passage(2)]
    assert counted and max(counted.values()) == 1


def test_build_prompt_still_drops_passages_to_fit() -> None:
    counted: Counter[str] = Counter()

    def count(text: str) -> int:
        counted[text] += 1
        return approx_tokens(text)

    passages = [passage(n) for n in range(1, 6)]
    full = build_prompt(persona="p", question="q?", passages=passages, history=[], count_tokens=count,
                        max_context_tokens=100_000, max_reply_tokens=0)
    budget = approx_tokens(full.messages[0].content) - 10 + 16  # the full system message no longer fits
    counted.clear()
    trimmed = build_prompt(persona="p", question="q?", passages=passages, history=[], count_tokens=count,
                           max_context_tokens=budget, max_reply_tokens=0)
    assert 0 < len(trimmed.passages) < len(passages)
    assert max(counted.values()) == 1  # one count per candidate system message, one for the question


def test_approx_tokens_is_memoised() -> None:
    text = "A distinctive sentence for the token cache, counted 3 times."
    first = approx_tokens(text)
    hits = approx_tokens.cache_info().hits
    assert approx_tokens(text) == first and approx_tokens.cache_info().hits == hits + 1


def test_leak_filters_share_the_hidden_windows_and_still_catch_leaks() -> None:
    secrets = ("Internal note: refunds over 500 need approval from finance.",)
    guard_a, guard_b = LeakGuard(secrets=secrets), LeakGuard(secrets=secrets)
    assert guard_a._hidden is guard_b._hidden  # built once (about half a millisecond each)
    assert leaks_instructions(GROUNDING_RULES[:120])
    assert not leaks_instructions("You can reset it from the sign-in page [1].")
    assert guard_a.feed(GROUNDING_RULES[:200]) == "" and guard_a.leaked
    assert not guard_b.leaked


def test_retrieval_executor_is_one_shared_pool_larger_than_asyncio_default() -> None:
    assert retrieval_executor() is retrieval_executor()
    assert RETRIEVAL_WORKERS >= 16  # 16 concurrent turns retrieve (and batch their queries) at once


async def test_retrieval_runs_on_the_retrieval_pool_in_the_turns_context(make_bot: BotFactory) -> None:
    seen: list[tuple[str, bool]] = []
    async with make_bot([ScriptedBackend()]) as bot:
        await bot.start()
        manager = bot._manager
        assert manager is not None
        inner = manager.retriever

        class Spy:
            def retrieve(self, query: str, *, k: int | None = None, message: str | None = None) -> list[Passage]:
                seen.append((threading.current_thread().name, metrics.current_turn() is not None))
                return inner.retrieve(query, k=k)

        manager.retriever = Spy()
        reply = await bot.reply("cost-1", "How do I export my data?")
        assert reply.citations
    assert seen == [(seen[0][0], True)] and seen[0][0].startswith("botkit-retrieve")
