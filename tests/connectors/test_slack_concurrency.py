"""Bounded answering: events are acknowledged at once, answered at most
``slack.max_concurrent_answers`` at a time, each exactly once, and none is lost when it
waits too long or the worker stops (its claim stays pending for recovery)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from botkit.backends.base import Completion, Prompt, StreamEvent
from botkit.backends.scripted import ScriptedBackend
from botkit.errors import StoreError
from connectors.slack.delivery import START_MARGIN_S
from tests.helpers.slack_server import SlackHarness, slack_harness
from tests.helpers.slack_stub import BOT_USER_ID, SlackStub


class CountingBackend(ScriptedBackend):
    """A :class:`ScriptedBackend` that records how many replies it generates at once."""

    def __init__(self) -> None:
        super().__init__()
        self.running = 0
        self.most = 0

    @contextmanager
    def _counted(self) -> Iterator[None]:
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            yield
        finally:
            self.running -= 1

    async def generate(self, prompt: Prompt, *, timeout: float) -> Completion:
        with self._counted():
            return await super().generate(prompt, timeout=timeout)

    async def stream(self, prompt: Prompt, *, timeout: float) -> AsyncIterator[StreamEvent]:
        with self._counted():
            async for event in super().stream(prompt, timeout=timeout):
                yield event


def mention(channel: str, text: str, ts: str) -> dict[str, Any]:
    return {"type": "app_mention", "channel": channel, "user": "U1", "text": f"<@{BOT_USER_ID}> {text}", "ts": ts,
            "client_msg_id": f"{channel}-{ts}"}


def answers(slack: SlackHarness, channel: str) -> list[str]:
    """The final texts of the bot's replies in a channel (updates that carry blocks)."""
    return [c.args["text"] for c in slack.calls("chat.update", channel) if c.args.get("blocks")]


async def test_a_burst_is_answered_at_most_c_at_a_time_each_exactly_once(
    tmp_path: Path, kit: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = CountingBackend()
    for number in range(12):
        backend.enqueue(f"Answer {number} [1].", delay=0.3)
    async with slack_harness(tmp_path / "bot", kit.serve, backend=backend, max_concurrent_answers=3) as slack:
        assert slack.connector.delivery.max_concurrent == 3
        events = [(mention("CBURST", f"question {n}", ts=f"1700000100.{n:06d}"), f"EvBurst{n}") for n in range(12)]
        responses = await asyncio.gather(*(slack.event(event, event_id=event_id) for event, event_id in events))
        assert [r.status_code for r in responses] == [200] * 12
        assert len(answers(slack, "CBURST")) < 12  # acknowledged before the answers (4 rounds of 0.3 s)
        await slack.stub.wait_for(lambda _: len(answers(slack, "CBURST")) == 12, timeout=30)
        await slack.settle()
        assert backend.most == 3  # never more than 3 answers at once, and the bound was used
        assert sorted(answers(slack, "CBURST")) == sorted(f"Answer {n} [1]." for n in range(12))
        placeholders = slack.calls("chat.postMessage", "CBURST")
        assert sorted(p.args["thread_ts"] for p in placeholders) == sorted(e["ts"] for e, _ in events)
        # Slack's retries of every event are acknowledged and dropped; the claims ended "done".
        retried = await asyncio.gather(*(slack.event(event, event_id=event_id, retry=1) for event, event_id in events))
        assert [r.status_code for r in retried] == [200] * 12
        await slack.settle()
        monkeypatch.setattr(slack.connector.delivery, "grace_s", 0.0)
        assert await slack.connector.delivery.recover() == 0
        assert len(slack.calls("chat.postMessage", "CBURST")) == 12 and backend.pending == 0


async def test_an_event_that_waited_too_long_is_left_to_recovery_and_answered_once(
    tmp_path: Path, kit: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = ScriptedBackend()
    backend.enqueue("First [1].", delay=1.5)
    backend.enqueue("Second [1].")
    async with slack_harness(tmp_path / "bot", kit.serve, backend=backend, max_concurrent_answers=1) as slack:
        delivery = slack.connector.delivery
        # A grace period that lets an event wait 0.5 s for a worker (past it, another worker could take it over).
        monkeypatch.setattr(delivery, "grace_s", slack.bot.config.limits.turn_timeout_s + START_MARGIN_S + 0.5)
        assert delivery.max_wait_s == pytest.approx(0.5)
        for number in range(2):
            event = mention("CWAIT", f"question {number}", ts=f"1700000200.{number:06d}")
            assert (await slack.event(event, event_id=f"EvWait{number}")).status_code == 200
        await slack.stub.wait_for(lambda _: answers(slack, "CWAIT") == ["First [1]."], timeout=15)
        await slack.settle()
        assert answers(slack, "CWAIT") == ["First [1]."] and backend.pending == 1  # the second was not started
        monkeypatch.setattr(delivery, "grace_s", 0.0)
        assert await delivery.recover() == 1  # still claimed and pending: recovery answers it
        await slack.stub.wait_for(lambda _: len(answers(slack, "CWAIT")) == 2, timeout=15)
        await slack.settle()
        assert answers(slack, "CWAIT") == ["First [1].", "Second [1]."]
        assert len(slack.calls("chat.postMessage", "CWAIT")) == 2
        assert await delivery.recover() == 0


async def test_events_still_queued_at_shutdown_are_answered_once_by_the_next_worker(tmp_path: Path, kit: Any) -> None:
    url = f"sqlite:///{tmp_path / 'botkit.db'}"
    first_backend, second_backend = ScriptedBackend(), ScriptedBackend()
    first_backend.enqueue("Slow [1].", delay=1.0)
    for _ in range(2):
        first_backend.enqueue("Never generated here [1].")
        second_backend.enqueue("After the restart [1].")
    events = [(mention("CQUEUED", f"question {n}", ts=f"1700000300.{n:06d}"), f"EvQueued{n}") for n in range(3)]
    with SlackStub() as stub:
        async with slack_harness(tmp_path / "a", kit.serve, database_url=url, stub=stub, backend=first_backend,
                                 max_concurrent_answers=1) as first:
            for event, event_id in events:
                assert (await first.event(event, event_id=event_id)).status_code == 200
            await stub.wait_for(lambda _: bool(first.calls("chat.postMessage", "CQUEUED")))
            started = time.monotonic()
        # Shutting down waited for the answer in progress; the two queued events were left pending.
        assert time.monotonic() - started < 10
        assert answers(first, "CQUEUED") == ["Slow [1]."] and first_backend.pending == 2
        async with slack_harness(tmp_path / "b", kit.serve, database_url=url, stub=stub, backend=second_backend) as second:
            second.connector.delivery.grace_s = 0.0
            await second.connector.delivery.recover()  # (or the start-up sweep already took them)
            await stub.wait_for(lambda _: len(answers(second, "CQUEUED")) == 3, timeout=15)
            await second.settle()
            await asyncio.sleep(0.3)
            assert sorted(answers(second, "CQUEUED")) == ["After the restart [1].", "After the restart [1].", "Slow [1]."]
            assert len(second.calls("chat.postMessage", "CQUEUED")) == 3 and second_backend.pending == 0


def test_max_concurrent_answers_is_a_slack_setting(tmp_path: Path) -> None:
    from botkit.config import load_config
    from botkit.errors import ConfigError

    (tmp_path / "bot.yaml").write_text("slack:\n  max_concurrent_answers: 2\n", encoding="utf-8")
    assert load_config(tmp_path, {}).slack.max_concurrent_answers == 2
    (tmp_path / "bot.yaml").write_text("slack:\n  max_concurrent_answers: 0\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="max_concurrent_answers"):
        load_config(tmp_path, {})


async def test_an_ack_does_not_wait_for_the_answers_database_threads(tmp_path: Path, kit: Any) -> None:
    from botkit.store.units import SQLITE_WORKERS

    async with slack_harness(tmp_path / "bot", kit.serve) as slack:
        store: Any = slack.bot.store

        def busy(connection: Any) -> None:  # an answer's long unit of work (a read: no lock held)
            time.sleep(1.5)

        # Every thread of the bot's store is taken by answer work for 1.5 s.
        blocking = [asyncio.create_task(store._run("keep a thread busy", busy)) for _ in range(SQLITE_WORKERS)]
        await asyncio.sleep(0.2)
        started = time.perf_counter()
        response = await slack.event(mention("CBUSY", "quick ack?", ts="1700000400.000100"), event_id="EvBusy")
        ack_s = time.perf_counter() - started
        assert response.status_code == 200 and ack_s < 1.0, ack_s  # the claim has threads of its own
        await asyncio.gather(*blocking)
        await slack.stub.wait_for(lambda _: answers(slack, "CBUSY") == ["[scripted] quick ack?"], timeout=15)


async def test_claims_arriving_together_are_written_together(tmp_path: Path) -> None:
    from botkit.store import SQLConversationStore
    from connectors.slack.delivery import ClaimBatcher

    async with SQLConversationStore(f"sqlite:///{tmp_path / 'claims.db'}") as store:
        batches: list[int] = []
        claim_events = store.claim_events

        async def counting(**kwargs: Any) -> list[bool]:
            batches.append(len(kwargs["events"]))
            return await claim_events(**kwargs)

        store.claim_events = counting  # type: ignore[method-assign]

        async def opened() -> SQLConversationStore:
            return store

        batcher = ClaimBatcher(opened)
        ids = [f"Ev{n}" for n in range(30)] + ["Ev3", "Ev7"]  # two redeliveries in the same burst
        won = await asyncio.gather(*(batcher.claim(event_id, {"event_id": event_id}) for event_id in ids))
        assert won == [True] * 30 + [False, False]
        assert sum(batches) == 32 and len(batches) <= 2  # the first at once, the rest together
        assert await batcher.claim("Ev0", {}) is False and batches[-1] == 1  # idle: written at once

        async def broken() -> SQLConversationStore:
            raise StoreError("database down")

        failing = ClaimBatcher(broken)
        results = await asyncio.gather(*(failing.claim(f"X{n}", {}) for n in range(5)), return_exceptions=True)
        assert all(isinstance(r, StoreError) for r in results)
