"""The buttons under a Slack answer (signed interactivity payloads) and handoff to a human."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.helpers.slack_server import SlackHarness, slack_harness
from tests.helpers.slack_stub import BOT_ID, BOT_USER_ID, TEAM_ID, SlackCall

pytestmark = pytest.mark.asyncio(loop_scope="module")
SUPPORT = "CSUPPORT"
ESCALATION = "I'm handing this conversation to a member of our support team."


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def slack(tmp_path_factory: pytest.TempPathFactory, kit: Any) -> AsyncIterator[SlackHarness]:
    async with slack_harness(tmp_path_factory.mktemp("slack") / "bot", kit.serve, support_channel=SUPPORT) as harness:
        yield harness


async def ask(slack: SlackHarness, channel: str, text: str, *, root: str = "1700000010.000100") -> SlackCall:
    """Mention the bot in ``channel``; return the chat.update that carries its answer."""
    event = {"type": "app_mention", "channel": channel, "user": "U1", "text": f"<@{BOT_USER_ID}> {text}", "ts": root,
             "client_msg_id": f"{channel}-{root}"}
    assert (await slack.event(event, event_id=f"Ev{channel}{root}")).status_code == 200
    await slack.stub.wait_for(lambda _: any(c.args.get("blocks") for c in slack.calls("chat.update", channel)))
    return next(c for c in slack.calls("chat.update", channel) if c.args.get("blocks"))


async def click(slack: SlackHarness, answer: SlackCall, action_id: str, *, root: str = "1700000010.000100") -> None:
    """Click a button of an answer, as Slack posts it (``block_actions``)."""
    channel, blocks = answer.args["channel"], answer.args["blocks"]
    button = next(e for b in blocks if b["type"] == "actions" for e in b["elements"] if e["action_id"] == action_id)
    message = {"type": "message", "ts": answer.args["ts"], "thread_ts": root, "text": answer.args["text"],
               "blocks": blocks, "user": BOT_USER_ID, "bot_id": BOT_ID}
    payload = {
        "type": "block_actions", "token": "legacy", "api_app_id": "A0000001", "trigger_id": "1.2.3",
        "user": {"id": "U1", "team_id": TEAM_ID}, "team": {"id": TEAM_ID, "domain": "example"},
        "container": {"type": "message", "message_ts": answer.args["ts"], "channel_id": channel, "thread_ts": root},
        "channel": {"id": channel, "name": "help"}, "message": message,
        "response_url": "https://hooks.slack.com/actions/T0000001/1/x",
        "actions": [{**button, "block_id": "botkit_actions", "action_ts": "1700000011.000100"}],
    }
    response = await slack.click(payload)
    assert response.status_code == 200, response.text
    await slack.settle()


async def test_feedback_buttons_record_a_rating(slack: SlackHarness) -> None:
    answer = await ask(slack, "CFEEDBACK", "rate me")
    actions = answer.args["blocks"][-1]["elements"]
    conversation_id, message_id = actions[2]["value"], int(actions[0]["value"])
    await click(slack, answer, "botkit_feedback_down")
    (feedback,) = await slack.bot.store.list_feedback(conversation_id=conversation_id)
    assert (feedback.rating, feedback.message_id) == (-1, message_id)
    updated = [c for c in slack.calls("chat.update", "CFEEDBACK") if c.args["ts"] == answer.args["ts"]][-1]
    assert [e["action_id"] for b in updated.args["blocks"] if b["type"] == "actions" for e in b["elements"]] == [
        "botkit_handoff"]  # no second vote
    assert updated.args["blocks"][-1]["elements"][0]["text"] == "Thanks for your feedback!"


async def test_feedback_on_an_unknown_message_is_ignored(slack: SlackHarness) -> None:
    answer = await ask(slack, "CFORGED", "hello")
    answer.args["blocks"][-1]["elements"][0]["value"] = "999999"
    await click(slack, answer, "botkit_feedback_up")
    assert all(f.message_id != 999999 for f in await slack.bot.store.list_feedback())
    assert len(slack.calls("chat.update", "CFORGED")) == 1  # the answer only: no "thanks"


async def test_talk_to_a_human_hands_off_and_the_bot_goes_quiet(slack: SlackHarness) -> None:
    root = "1700000010.000100"
    answer = await ask(slack, "CHUMAN", "help me")
    conversation_id = answer.args["blocks"][-1]["elements"][2]["value"]
    await click(slack, answer, "botkit_handoff")
    conversation = await slack.bot.conversation(conversation_id)
    assert conversation is not None and conversation.state == "handoff"
    assert conversation.metadata["handoff_reason"] == "asked for a human (Slack button)"
    (permalink,) = slack.stub.calls_to("chat.getPermalink")
    assert permalink.args == {"channel": "CHUMAN", "message_ts": root}
    (notice,) = slack.calls("chat.postMessage", SUPPORT)
    assert "<https://example.slack.com/archives/CHUMAN/p1700000010000100|Open the conversation in Slack>" in notice.args["text"]
    assert "<@U1>" in notice.args["text"]
    escalation = slack.calls("chat.postMessage", "CHUMAN")[-1]
    assert escalation.args["thread_ts"] == root and escalation.args["text"].startswith(ESCALATION)

    # Clicking again changes nothing; a later message in the thread is kept for the human, unanswered.
    await click(slack, answer, "botkit_handoff")
    posted = len(slack.stub.calls_to("chat.postMessage"))
    follow_up = {"type": "message", "channel": "CHUMAN", "channel_type": "channel", "user": "U1", "text": "hello?",
                 "ts": "1700000010.000300", "thread_ts": root, "client_msg_id": "human-follow-up"}
    assert (await slack.event(follow_up, event_id="EvHumanFollowUp")).status_code == 200
    await slack.settle()
    assert len(slack.stub.calls_to("chat.postMessage")) == posted
    history = await slack.bot.history(conversation_id)
    assert [m.text for m in history][-1] == "hello?"


async def test_asking_for_a_human_in_words_announces_the_handoff(slack: SlackHarness) -> None:
    answer = await ask(slack, "CWORDS", "I want to talk to a human please", root="1700000012.000100")
    assert answer.args["text"].startswith(ESCALATION)
    assert [b["type"] for b in answer.args["blocks"]] == ["section"]  # no buttons: a human holds it now
    await slack.settle()
    notices = [c for c in slack.calls("chat.postMessage", SUPPORT) if "CWORDS" in c.args["text"]]
    assert len(notices) == 1


async def test_an_agents_console_reply_is_posted_in_the_thread(slack: SlackHarness) -> None:
    from botkit.agents import AgentDirectory
    from botkit.inbox import Inbox

    root = "1700000014.000100"
    await ask(slack, "CAGENT", "I need a real person now", root=root)
    await slack.settle()
    conversation = await slack.bot.store.find_conversation(
        bot=slack.bot.name, channel="slack", external_id=f"thread:{TEAM_ID}:CAGENT:{root}")
    assert conversation is not None and conversation.state == "handoff"
    conversation_id = conversation.id
    directory = AgentDirectory.from_url(slack.bot.config.resolved_database_url)
    try:
        agent = await directory.create("agent@example.com", "correct horse battery", bots=[slack.bot.name])
        inbox = Inbox(store=slack.bot.store, engine=directory.engine, observers=slack.bot.observers)
        await inbox.claim(agent, conversation_id)
        await inbox.reply(agent, conversation_id, "Hi, this is **Dana** from support. I'm on it.")
    finally:
        await directory.aclose()
    await slack.stub.wait_for(lambda _: any("Dana" in c.args.get("text", "") for c in slack.calls("chat.postMessage", "CAGENT")))
    (posted,) = [c for c in slack.calls("chat.postMessage", "CAGENT") if "Dana" in c.args.get("text", "")]
    assert posted.args["thread_ts"] == root
    assert "*Dana*" in posted.args["text"] and "agent@example.com" in posted.args["text"]
