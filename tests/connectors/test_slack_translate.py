"""The Slack connector's pure translation: events in, mrkdwn and Block Kit out, Slack's limits."""

from __future__ import annotations

import pytest

from botkit.messages import Citation, Reply
from connectors.slack import translate
from connectors.slack.translate import from_mrkdwn, render, split_text, to_incoming, to_mrkdwn

BOT = "UBOT"


def _event(**fields: object) -> dict[str, object]:
    event: dict[str, object] = {"type": "message", "channel": "C1", "user": "U1", "text": "hi", "ts": "1.000001"}
    event.update(fields)
    return event


# -- events in ----------------------------------------------------------------------------

def test_a_mention_starts_a_thread_conversation() -> None:
    incoming = to_incoming(_event(type="app_mention", text=f"<@{BOT}> How do I reset it?", client_msg_id="m1"),
                           team_id="T1", bot_user_id=BOT)
    assert incoming is not None
    assert incoming.text == "How do I reset it?" and incoming.channel == "slack"
    assert incoming.external_id == "thread:T1:C1:1.000001" and incoming.channel_message_id == "m1"
    assert incoming.metadata["slack"] | {} == {"kind": "mention", "team": "T1", "channel": "C1", "user": "U1",
                                               "ts": "1.000001", "thread_ts": "1.000001"}
    in_thread = to_incoming(_event(type="app_mention", text=f"<@{BOT}> and?", ts="2.0", thread_ts="1.000001"),
                            team_id="T1", bot_user_id=BOT)
    assert in_thread is not None and in_thread.external_id == "thread:T1:C1:1.000001"
    assert in_thread.channel_message_id == "C1:2.0"  # no client_msg_id: channel + ts


def test_direct_messages_and_thread_follow_ups() -> None:
    dm = to_incoming(_event(channel="D1", channel_type="im"), team_id="T1", bot_user_id=BOT)
    assert dm is not None and dm.external_id == "dm:T1:U1" and dm.metadata["slack"]["kind"] == "dm"
    follow_up = to_incoming(_event(channel_type="channel", ts="2.0", thread_ts="1.0"), team_id="T1", bot_user_id=BOT)
    assert follow_up is not None and follow_up.metadata["slack"]["kind"] == "thread"
    assert follow_up.external_id == "thread:T1:C1:1.0"


@pytest.mark.parametrize("fields", [
    {"channel_type": "channel"},  # top-level chatter
    {"channel_type": "channel", "ts": "2.0", "thread_ts": "1.0", "text": f"<@{BOT}> hi"},  # app_mention answers it
    {"channel_type": "im", "bot_id": "B2"},  # another bot
    {"channel_type": "im", "subtype": "bot_message"},
    {"channel_type": "im", "user": BOT},  # the bot itself
    {"channel_type": "im", "subtype": "message_changed"},
    {"channel_type": "im", "text": f"<@{BOT}>"},  # nothing left to answer
    {"type": "reaction_added"},
])
def test_what_the_bot_does_not_answer(fields: dict[str, object]) -> None:
    assert to_incoming(_event(**fields), team_id="T1", bot_user_id=BOT) is None


def test_slack_markup_becomes_plain_text() -> None:
    text = f"<@{BOT}> ask <@U2|bob> in <#C9|general>: see <https://x.io/a|the docs> &amp; <https://y.io> &lt;3"
    assert from_mrkdwn(text, bot_user_id=BOT) == "ask @bob in #general: see the docs (https://x.io/a) & https://y.io <3"


# -- Markdown to mrkdwn ---------------------------------------------------------------------

def test_markdown_to_mrkdwn() -> None:
    markdown = (
        "## Reset **your** password\n"
        "Click **Settings** > *Security* & then [Reset](https://ex.com/r?a=1&b=2).\n"
        "- one `a<b>`\n* two ~~old~~ __new__\n"
        "Not linked: [docs](/relative) or [x](javascript:alert(1)); snake_case and 2*3*4 stay."
    )
    assert to_mrkdwn(markdown).split("\n") == [
        "*Reset your password*",
        "Click *Settings* &gt; _Security_ &amp; then <https://ex.com/r?a=1&amp;b=2|Reset>.",
        "• one `a&lt;b&gt;`",
        "• two ~old~ *new*",
        "Not linked: docs (/relative) or x (javascript:alert(1)); snake_case and 2*3*4 stay.",
    ]


def test_code_blocks_are_kept_and_escaped() -> None:
    assert to_mrkdwn("Run:\n```sh\nif a < b && **c**; then\n```\ndone") == "Run:\n```\nif a &lt; b &amp;&amp; **c**; then\n```\ndone"


# -- limits ---------------------------------------------------------------------------------

def test_split_prefers_paragraphs_and_never_breaks_links_or_entities() -> None:
    paragraphs = "\n\n".join(["word " * 150] * 10)
    pieces = split_text(paragraphs, 3000)
    assert all(len(p) <= 3000 for p in pieces) and len(pieces) >= 3
    assert all(p.endswith("word") for p in pieces)  # whole paragraphs or lines
    tricky = "a" * 2990 + "<https://example.com/" + "y" * 30 + "|label>" + " &amp;" * 3
    for piece in split_text(tricky.replace(" ", "x"), 3000):
        assert piece.count("<") == piece.count(">") and not piece.endswith(("&", "&am", "&amp"))


def test_split_closes_and_reopens_a_code_block() -> None:
    text = "```\n" + "\n".join(f"line {n}" for n in range(1000)) + "\n```"
    pieces = split_text(text, 3000)
    assert len(pieces) > 1 and all(p.startswith("```") and p.endswith("```") and len(p) <= 3000 for p in pieces)


def _reply(text: str, **fields: object) -> Reply:
    values: dict[str, object] = {"conversation_id": "conv1", "text": text, "message_id": 42}
    values.update(fields)
    return Reply(**values)  # type: ignore[arg-type]


def test_render_a_short_answer_with_citations_and_buttons() -> None:
    citations = [Citation(1, "account/reset.md", "Reset <password>", "…", url="https://help.example.com/reset"),
                 Citation(2, "faq.csv", "Frequently asked", "…")]  # no URL: the source name
    (message,) = render(_reply("Use **Forgot password?** [1][2].", citations=citations))
    section, context, actions = message["blocks"]
    assert section["text"] == {"type": "mrkdwn", "text": "Use *Forgot password?* [1][2]."}
    assert [e["text"] for e in context["elements"]] == [
        "[1] <https://help.example.com/reset|Reset &lt;password&gt;>", "[2] faq.csv"]
    assert [(e["action_id"], e["value"]) for e in actions["elements"]] == [
        ("botkit_feedback_up", "42"), ("botkit_feedback_down", "42"), ("botkit_handoff", "conv1")]
    assert message["text"] == "Use *Forgot password?* [1][2]."


def test_render_splits_long_answers_at_slacks_limits() -> None:
    text = "\n\n".join(f"Paragraph {n}. " + "lorem ipsum " * 200 for n in range(80))  # ~196,000 characters
    messages = render(_reply(text, citations=[Citation(1, "a.md", "A", "…")]))
    assert len(messages) >= 5
    for message in messages:
        assert len(message["blocks"]) <= translate.BLOCK_LIMIT and len(message["text"]) <= translate.TEXT_LIMIT
        assert all(len(b["text"]["text"]) <= translate.SECTION_LIMIT for b in message["blocks"] if b["type"] == "section")
    assert [b["type"] for b in messages[-1]["blocks"]][-2:] == ["context", "actions"]
    assert all(b["type"] == "section" for m in messages[:-1] for b in m["blocks"])
    assert len(messages[-1]["text"]) <= translate.BUTTONS_MESSAGE_CHARS
    rendered = " ".join(b["text"]["text"] for m in messages for b in m["blocks"] if b["type"] == "section")
    assert rendered.split() == to_mrkdwn(text).split()  # nothing lost, nothing repeated


def test_render_handoff_and_without_buttons() -> None:
    (message,) = render(_reply("A person will reply here.", handoff=True))
    assert [b["type"] for b in message["blocks"]] == ["section"]  # no buttons once a human holds it
    (answer,) = render(_reply("Sure."))
    blocks = translate.without_buttons(answer["blocks"], [translate.FEEDBACK_UP, translate.FEEDBACK_DOWN], "Thanks!")
    assert [e["action_id"] for e in blocks[1]["elements"]] == ["botkit_handoff"]
    assert blocks[-1] == {"type": "context", "elements": [{"type": "mrkdwn", "text": "Thanks!"}]}
    assert [b["type"] for b in translate.without_buttons(blocks, [translate.HANDOFF])] == ["section", "context"]
