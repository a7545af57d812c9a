"""The router: fallback order, deadlines, circuit breakers, streaming fallback."""

from __future__ import annotations

import time

import pytest

from botkit.backends.base import ChatMessage, Done, Prompt, TextDelta
from botkit.backends.extractive import ExtractiveBackend
from botkit.backends.scripted import ScriptedBackend
from botkit.config import BotConfig
from botkit.errors import BackendError, BackendUnavailable
from botkit.router import USER_MESSAGE, AllBackendsFailed, BreakerPolicy, CircuitBreaker, Router, StreamInterrupted

PROMPT = Prompt([ChatMessage("user", "Where is my order?")], "Where is my order?", [])


class Clock:
    """A clock tests move by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def pair() -> tuple[ScriptedBackend, ScriptedBackend]:
    return ScriptedBackend(model="a"), ScriptedBackend(model="b")


async def test_first_healthy_backend_answers() -> None:
    a, b = pair()
    a.enqueue("from a")
    completion = await Router([a, b]).generate(PROMPT)
    assert completion.backend == "scripted:a" and b.prompts == []


async def test_falls_back_in_order() -> None:
    a, b = pair()
    c = ScriptedBackend(model="c")
    a.enqueue(BackendUnavailable("a is down"))
    b.enqueue(BackendError("b rejected it"))
    c.enqueue("from c")
    completion = await Router([a, b, c]).generate(PROMPT)
    assert completion.text == "from c" and completion.backend == "scripted:c"
    assert (len(a.prompts), len(b.prompts), len(c.prompts)) == (1, 1, 1)


async def test_attempt_deadline_moves_on_to_the_next_backend() -> None:
    a, b = pair()
    a.enqueue("too slow", delay=5)
    b.enqueue("from b")
    started = time.monotonic()
    completion = await Router([a, b], attempt_timeout=0.2, turn_timeout=10).generate(PROMPT)
    assert completion.backend == "scripted:b"
    assert time.monotonic() - started < 0.2 + 1.0


async def test_backend_own_timeout_is_the_default_attempt_deadline() -> None:
    a, b = pair()
    a.timeout_s = 0.2
    a.enqueue("too slow", delay=5)
    started = time.monotonic()
    assert (await Router([a, b], turn_timeout=10).generate(PROMPT)).backend == "scripted:b"
    assert time.monotonic() - started < 0.2 + 1.0


async def test_a_backend_ignoring_its_timeout_is_cut_off() -> None:
    class Stubborn(ScriptedBackend):
        async def generate(self, prompt: Prompt, *, timeout: float):  # type: ignore[no-untyped-def]
            return await super().generate(prompt, timeout=timeout * 100)

    stubborn, b = Stubborn(model="stubborn"), ScriptedBackend(model="b")
    stubborn.enqueue("late", delay=3)
    started = time.monotonic()
    assert (await Router([stubborn, b], attempt_timeout=0.2).generate(PROMPT)).backend == "scripted:b"
    assert time.monotonic() - started < 0.2 + 1.0


async def test_turn_deadline_caps_the_whole_chain() -> None:
    a, b = pair()
    a.enqueue("slow", delay=5)
    b.enqueue("slow", delay=5)
    started = time.monotonic()
    with pytest.raises(AllBackendsFailed) as info:
        await Router([a, b], attempt_timeout=2, turn_timeout=0.3).generate(PROMPT)
    assert time.monotonic() - started < 0.3 + 1.0
    outcomes = [(x.backend, x.outcome) for x in info.value.attempts]
    assert outcomes[0] == ("scripted:a", "timeout")
    assert outcomes[1][1] in ("timeout", "skipped")


async def test_all_fail_lists_every_attempt_with_a_user_safe_message() -> None:
    a, b = pair()
    a.enqueue(BackendUnavailable("rate limited"))
    b.enqueue(BackendError("bad request"))
    with pytest.raises(BackendError) as info:
        await Router([a, b]).generate(PROMPT)
    error = info.value
    assert isinstance(error, AllBackendsFailed)
    assert "scripted:a: failed (BackendUnavailable: rate limited)" in str(error)
    assert "scripted:b: failed (BackendError: bad request)" in str(error)
    assert error.user_message == USER_MESSAGE and "scripted" not in error.user_message


async def test_breaker_opens_skips_half_opens_and_closes() -> None:
    clock = Clock()
    a, b = pair()
    router = Router([a, b], breaker=BreakerPolicy(failure_threshold=3, cooldown_s=30, clock=clock))
    for _ in range(3):
        a.enqueue(BackendUnavailable("down"))
        assert (await router.generate(PROMPT)).backend == "scripted:b"
    assert router.states() == {"scripted:a": "open", "scripted:b": "closed"}

    await router.generate(PROMPT)  # a is skipped while open
    assert len(a.prompts) == 3

    clock.now += 30
    assert router.states()["scripted:a"] == "half_open"
    a.enqueue(BackendUnavailable("still down"))  # the trial fails: open again for a new cool-down
    assert (await router.generate(PROMPT)).backend == "scripted:b"
    assert router.states()["scripted:a"] == "open" and len(a.prompts) == 4

    clock.now += 29
    await router.generate(PROMPT)
    assert len(a.prompts) == 4
    clock.now += 1
    a.enqueue("recovered")
    assert (await router.generate(PROMPT)).backend == "scripted:a"
    assert router.states()["scripted:a"] == "closed"


def test_half_open_lets_one_trial_through() -> None:
    clock = Clock()
    breaker = CircuitBreaker(BreakerPolicy(failure_threshold=1, cooldown_s=5, clock=clock))
    breaker.record_failure()
    assert breaker.state == "open" and not breaker.allow()
    clock.now += 5
    assert breaker.allow() and not breaker.allow()  # the second concurrent caller waits
    breaker.record_success()
    assert breaker.state == "closed" and breaker.failures == 0


def test_successes_reset_the_failure_count() -> None:
    breaker = CircuitBreaker(BreakerPolicy(failure_threshold=2))
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state == "closed"


async def test_all_skipped_when_every_circuit_is_open() -> None:
    clock = Clock()
    a = ScriptedBackend(model="a")
    router = Router([a], breaker=BreakerPolicy(failure_threshold=1, clock=clock))
    a.enqueue(BackendUnavailable("down"))
    with pytest.raises(AllBackendsFailed):
        await router.generate(PROMPT)
    with pytest.raises(AllBackendsFailed, match="circuit open"):
        await router.generate(PROMPT)


async def test_bugs_propagate() -> None:
    a, b = pair()
    a.enqueue(KeyError("bug"))
    router = Router([a, b])
    with pytest.raises(KeyError):
        await router.generate(PROMPT)
    assert b.prompts == [] and router.states()["scripted:a"] == "closed"


async def test_stream_falls_back_before_the_first_text() -> None:
    a, b = pair()
    a.enqueue(BackendUnavailable("down"))
    b.enqueue("streamed by b", chunks=["streamed", " by", " b"])
    events = [e async for e in Router([a, b]).stream(PROMPT)]
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["streamed", " by", " b"]
    done = events[-1]
    assert isinstance(done, Done) and done.completion.backend == "scripted:b"


async def test_stream_slow_first_token_falls_back() -> None:
    a, b = pair()
    a.enqueue("late", first_token_delay=5)
    b.enqueue("quick")
    events = [e async for e in Router([a, b], attempt_timeout=0.2).stream(PROMPT)]
    assert events[-1].completion.backend == "scripted:b"  # type: ignore[union-attr]


async def test_stream_failure_after_text_raises_stream_interrupted() -> None:
    a, b = pair()
    a.enqueue("half an ans", chunks=["half", " an", " ans"], then_raise=BackendUnavailable("connection reset"))
    router = Router([a, b])
    seen: list[str] = []
    with pytest.raises(StreamInterrupted) as info:
        async for event in router.stream(PROMPT):
            if isinstance(event, TextDelta):
                seen.append(event.text)
    assert info.value.partial_text == "half an ans" == "".join(seen)
    assert info.value.backend == "scripted:a"
    assert isinstance(info.value, BackendError) and b.prompts == []


async def test_stream_all_fail() -> None:
    a, b = pair()
    a.enqueue(BackendUnavailable("down"))
    b.enqueue(BackendUnavailable("down too"))
    with pytest.raises(AllBackendsFailed):
        async for _ in Router([a, b]).stream(PROMPT):
            pass


async def test_breaker_success_is_recorded_when_the_caller_stops_at_done() -> None:
    clock = Clock()
    a = ScriptedBackend(model="a")
    router = Router([a], breaker=BreakerPolicy(failure_threshold=1, cooldown_s=1, clock=clock))
    a.enqueue(BackendUnavailable("down"))
    with pytest.raises(AllBackendsFailed):
        await router.generate(PROMPT)
    clock.now += 1
    stream = router.stream(PROMPT)
    async for event in stream:
        if isinstance(event, Done):
            break
    await stream.aclose()  # type: ignore[attr-defined]
    assert router.states() == {"scripted:a": "closed"}


def test_from_config_and_duplicate_names() -> None:
    router = Router.from_config(BotConfig.model_validate({"backends": ["scripted", "extractive", "scripted"],
                                                          "limits": {"turn_timeout_s": 12}}))
    assert router.turn_timeout == 12
    assert isinstance(router.backends[1], ExtractiveBackend)
    assert router.states() == {"scripted": "closed", "extractive": "closed", "scripted#2": "closed"}
    with pytest.raises(ValueError):
        Router([])
