"""The Slack connector over real HTTP: signed events into the web app, replies into a Slack stub.

Each test talks to its own channel, so the module shares one served bot (scripted
replies, a fixed passage, SQLite). Exactly-once delivery runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.helpers.slack_server import SlackHarness, slack_harness
from tests.helpers.slack_stub import BOT_ID, BOT_USER_ID, SlackStub

pytestmark = pytest.mark.asyncio(loop_scope="module")
ANSWER = "[scripted] "


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def slack(tmp_path_factory: pytest.TempPathFactory, kit: Any) -> AsyncIterator[SlackHarness]:
    async with slack_harness(tmp_path_factory.mktemp("slack") / "bot", kit.serve) as harness:
        yield harness


def mention(channel: str, text: str, ts: str = "1700000000.000100", **fields: Any) -> dict[str, Any]:
    return {"type": "app_mention", "channel": channel, "user": "U1", "text": f"<@{BOT_USER_ID}> {text}", "ts": ts,
            "client_msg_id": f"{channel}-{ts}", **fields}


def message(channel: str, text: str, ts: str, **fields: Any) -> dict[str, Any]:
    return {"type": "message", "channel": channel, "user": "U1", "text": text, "ts": ts,
            "channel_type": "channel", "client_msg_id": f"{channel}-{ts}", **fields}


def answers(slack: SlackHarness, channel: str) -> list[str]:
    """The final texts of the bot's replies in a channel (updates that carry blocks)."""
    return [c.args["text"] for c in slack.calls("chat.update", channel) if c.args.get("blocks")]


async def test_url_verification(slack: SlackHarness) -> None:
    import json

    from tests.helpers.slack_stub import signed_headers

    body = json.dumps({"token": "t", "challenge": "3eZbrw1aBm2rZgRNFdxV", "type": "url_verification"})
    response = await slack.http.post("/slack/events", content=body, headers=signed_headers(body))
    assert response.status_code == 200 and response.json() == {"challenge": "3eZbrw1aBm2rZgRNFdxV"}


@pytest.mark.parametrize("case", ["bad", "stale"])
async def test_unsigned_or_stale_requests_are_rejected_before_anything_runs(slack: SlackHarness, case: str) -> None:
    channel, event_id = f"CREJECT{case}", f"EvReject{case}"
    if case == "bad":
        response = await slack.event(mention(channel, "hi"), event_id=event_id, secret="not-the-secret")
    else:
        response = await slack.event(mention(channel, "hi"), event_id=event_id, timestamp=int(time.time()) - 6 * 60)
    assert response.status_code == 401
    await asyncio.sleep(0.3)
    assert not slack.calls("chat.postMessage", channel)
    assert await slack.bot.store.claim_event(channel="slack", event_id=event_id)  # it was never claimed


async def test_a_mention_is_answered_in_its_thread(slack: SlackHarness) -> None:
    response = await slack.event(mention("CMENTION", "How do I **reset** it?", ts="1700000001.000100"), event_id="EvM")
    assert response.status_code == 200
    calls = await slack.stub.wait_for(lambda _: bool(answers(slack, "CMENTION")))
    (placeholder,) = slack.calls("chat.postMessage", "CMENTION")
    assert placeholder.args == {"channel": "CMENTION", "thread_ts": "1700000001.000100", "text": "Looking that up…"}
    (update,) = [c for c in calls if c.method == "chat.update"]
    assert update.args["text"] == "[scripted] How do I *reset* it?"
    blocks = update.args["blocks"]
    assert blocks[1]["elements"][0]["text"] == "[1] <https://help.example.com/reset-password|Resetting your password>"
    assert [e["action_id"] for e in blocks[2]["elements"]] == ["botkit_feedback_up", "botkit_feedback_down",
                                                               "botkit_handoff"]
    conversation = await slack.bot.store.get_conversation(blocks[2]["elements"][2]["value"])
    assert conversation is not None and conversation.external_id == "thread:T0000001:CMENTION:1700000001.000100"


async def test_a_slow_answer_is_acknowledged_at_once_and_posted_later(slack: SlackHarness) -> None:
    slack.backend.enqueue("Slow but sure [1].", delay=4.0)
    started = time.perf_counter()
    response = await slack.event(mention("CSLOW", "slow question"), event_id="EvSlow")
    ack_s = time.perf_counter() - started
    assert response.status_code == 200 and ack_s < 1.0, ack_s
    assert not answers(slack, "CSLOW")
    await slack.stub.wait_for(lambda _: answers(slack, "CSLOW") == ["Slow but sure [1]."], timeout=15)
    assert time.perf_counter() - started >= 4.0


async def test_thread_follow_ups_need_no_mention(slack: SlackHarness) -> None:
    root = "1700000002.000100"
    await slack.event(mention("CTHREAD", "first", ts=root), event_id="EvT1")
    await slack.stub.wait_for(lambda _: len(answers(slack, "CTHREAD")) == 1)
    await slack.event(message("CTHREAD", "and a follow-up", "1700000002.000200", thread_ts=root), event_id="EvT2")
    await slack.event(message("CTHREAD", "top-level chatter", "1700000002.000300"), event_id="EvT3")
    await slack.event(message("CTHREAD", "another thread", "1700000002.000500", thread_ts="1700000002.000400"),
                      event_id="EvT4")
    await slack.stub.wait_for(lambda _: len(answers(slack, "CTHREAD")) == 2)
    await slack.settle()
    assert answers(slack, "CTHREAD") == ["[scripted] first", "[scripted] and a follow-up"]
    assert {c.args["thread_ts"] for c in slack.calls("chat.postMessage", "CTHREAD")} == {root}
    conversation = await slack.bot.store.find_conversation(bot="slackbot", channel="slack",
                                                           external_id=f"thread:T0000001:CTHREAD:{root}")
    assert conversation is not None and await slack.bot.store.count_messages(conversation.id) == 4


async def test_own_and_other_bots_messages_are_ignored(slack: SlackHarness) -> None:
    own = {"type": "message", "channel": "DBOTS", "channel_type": "im", "user": BOT_USER_ID, "bot_id": BOT_ID,
           "text": "Looking that up…", "ts": "1700000003.000100"}
    other = {"type": "message", "subtype": "bot_message", "channel": "DBOTS", "channel_type": "im", "bot_id": "B999",
             "text": "beep", "ts": "1700000003.000200"}
    for number, event in enumerate([own, other]):
        assert (await slack.event(event, event_id=f"EvBot{number}")).status_code == 200
    await slack.settle()
    await asyncio.sleep(0.2)
    assert not slack.calls("chat.postMessage", "DBOTS")
    assert await slack.bot.store.claim_event(channel="slack", event_id="EvBot1")  # ignored before any claim


async def test_a_direct_message_conversation_restarts_after_idle_time(
    slack: SlackHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    def dm(ts: str, text: str) -> dict[str, Any]:
        return {**message("DIDLE", text, ts, channel_type="im"), "user": "UIDLE"}

    await slack.event(dm("1700000004.000100", "one"), event_id="EvD1")
    await slack.event(dm("1700000004.000200", "two"), event_id="EvD2")
    await slack.stub.wait_for(lambda _: len(answers(slack, "DIDLE")) == 2)
    first = await slack.bot.store.find_conversation(bot="slackbot", channel="slack", external_id="dm:T0000001:UIDLE")
    assert first is not None and await slack.bot.store.count_messages(first.id) == 4
    assert all("thread_ts" not in c.args for c in slack.calls("chat.postMessage", "DIDLE"))  # DMs: no threads
    monkeypatch.setattr(slack.connector.settings, "dm_idle_minutes", 0.5 / 60)
    await asyncio.sleep(0.7)
    await slack.event(dm("1700000004.000300", "three"), event_id="EvD3")
    await slack.stub.wait_for(lambda _: len(answers(slack, "DIDLE")) == 3)
    second = await slack.bot.store.find_conversation(bot="slackbot", channel="slack", external_id="dm:T0000001:UIDLE")
    assert second is not None and second.id != first.id
    assert (await slack.bot.store.get_conversation(first.id)).state == "closed"  # type: ignore[union-attr]


async def test_a_long_answer_is_split_into_follow_up_messages(slack: SlackHarness) -> None:
    slack.backend.enqueue("\n\n".join(f"Step {n}: " + "do the thing " * 100 for n in range(12)) + " [1]")
    await slack.event(mention("CLONG", "long one"), event_id="EvLong")
    await slack.stub.wait_for(lambda _: bool(answers(slack, "CLONG")))
    await slack.settle()
    update = slack.calls("chat.update", "CLONG")[-1]  # the final update (partial ones may precede it)
    follow_ups = slack.calls("chat.postMessage", "CLONG")[1:]
    assert follow_ups and all(c.args["thread_ts"] == "1700000000.000100" for c in follow_ups)
    last = follow_ups[-1].args["blocks"]
    assert [b["type"] for b in last][-2:] == ["context", "actions"]
    sections = [b for c in [update, *follow_ups] for b in c.args["blocks"] if b["type"] == "section"]
    assert all(len(b["text"]["text"]) <= 3000 for b in sections) and "Step 11" in sections[-1]["text"]["text"]


async def test_retries_and_a_second_worker_produce_one_reply(store_url: str, tmp_path: Path, kit: Any) -> None:
    url, database = store_url, store_url.split(":")[0]
    event = mention(f"CONCE{database}", "only once please")
    with SlackStub() as stub:
        async with slack_harness(tmp_path / "a", kit.serve, database_url=url, stub=stub) as first, \
                slack_harness(tmp_path / "b", kit.serve, database_url=url, stub=stub) as second:
            for worker in (first, second):
                worker.backend.enqueue("Once [1].", delay=0.5)
            responses = await asyncio.gather(
                first.event(event, event_id=f"EvOnce{database}"),
                second.event(event, event_id=f"EvOnce{database}", retry=1),
                first.event(event, event_id=f"EvOnce{database}", retry=2),
            )
            assert [r.status_code for r in responses] == [200, 200, 200]
            await stub.wait_for(lambda _: bool(answers(first, event["channel"])))
            await first.settle()
            await second.settle()
            await asyncio.sleep(0.3)
            assert len(first.calls("chat.postMessage", event["channel"])) == 1
            assert answers(first, event["channel"]) == ["Once [1]."]
            assert first.backend.pending + second.backend.pending == 1  # one generation in all


async def test_recovery_finishes_a_dead_workers_event_in_its_placeholder(
    slack: SlackHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from connectors.slack.translate import to_incoming
    from tests.helpers.slack_stub import event_body

    body = json.loads(event_body(mention("CRECOVER", "where was I?"), event_id="EvRecover"))
    incoming = to_incoming(body["event"], team_id=body["team_id"], bot_user_id=BOT_USER_ID)
    assert incoming is not None
    # What a worker leaves behind when it dies after posting the placeholder:
    assert await slack.bot.store.claim_event(channel="slack", event_id="EvRecover", payload=body)
    conversation = await slack.connector.turns.conversation_for(incoming)
    await slack.bot.store.update_metadata(conversation.id, {"slack_placeholder:EvRecover": "1699999999.000100"})
    monkeypatch.setattr(slack.connector.delivery, "grace_s", 0.0)
    assert await slack.connector.delivery.recover() >= 1
    await slack.settle()
    assert not slack.calls("chat.postMessage", "CRECOVER")  # the dead worker's placeholder is reused
    (update,) = slack.calls("chat.update", "CRECOVER")
    assert update.args["ts"] == "1699999999.000100" and update.args["text"] == "[scripted] where was I?"
    assert "slack_placeholder:EvRecover" not in (await slack.bot.conversation(conversation.id)).metadata  # type: ignore[union-attr]
    assert await slack.connector.delivery.recover() == 0  # done: not taken again


async def test_a_failed_answer_is_recorded_as_failed_not_retried(
    slack: SlackHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    slack.stub.fail("chat.postMessage", "channel_not_found")
    assert (await slack.event(mention("CFAIL", "anyone?"), event_id="EvFail")).status_code == 200
    await slack.settle()
    assert not slack.calls("chat.update", "CFAIL")
    monkeypatch.setattr(slack.connector.delivery, "grace_s", 0.0)
    assert await slack.connector.delivery.recover() == 0  # "failed", not "pending": no second try
    assert (await slack.event(mention("CFAIL", "and now?", ts="1700000050.000100"), event_id="EvFail2")).status_code == 200
    await slack.stub.wait_for(lambda _: answers(slack, "CFAIL") == ["[scripted] and now?"])
