"""Pure translation between Slack and botkit: events in, Block Kit messages out.

``to_incoming(event)`` turns an Events API event into an :class:`IncomingMessage` (or
``None`` for what the bot must not answer); ``render(reply)`` turns a :class:`Reply` into
one or more Slack messages (``{"text": ..., "blocks": [...]}``) within Slack's limits;
``to_mrkdwn`` (from :mod:`connectors.slack.mrkdwn`) converts the model's Markdown to
Slack's mrkdwn and ``split_text`` cuts it at Slack's limits. No I/O here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from botkit.messages import Citation, IncomingMessage, Reply
from connectors.slack.mrkdwn import escape, outside_markup, split_text, to_mrkdwn, url_target

CHANNEL = "slack"
TEXT_LIMIT = 40_000  # characters of one message's text
SECTION_LIMIT = 3_000  # characters of one section block's text
BLOCK_LIMIT = 50  # blocks per message
CONTEXT_ELEMENTS = 10  # elements per context block
BUTTONS_MESSAGE_CHARS = 6_000  # text of the message carrying the buttons (its click payload echoes it)
ACTIONS_BLOCK_ID = "botkit_actions"
FEEDBACK_UP, FEEDBACK_DOWN, HANDOFF = "botkit_feedback_up", "botkit_feedback_down", "botkit_handoff"
PLACEHOLDER_TEXT = "Looking that up…"
_ANSWERED_SUBTYPES = {None, "thread_broadcast", "file_share"}

SlackMessage = dict[str, Any]
"""``{"text": fallback, "blocks": [...]}``: the keyword arguments of chat.postMessage/update."""


# -- events in --------------------------------------------------------------------------

def dm_key(team: str, user: str) -> str:
    """The external id of a user's direct-message conversation."""
    return f"dm:{team}:{user}"


def thread_key(team: str, channel: str, thread_ts: str) -> str:
    """The external id of the conversation held in one channel thread."""
    return f"thread:{team}:{channel}:{thread_ts}"


def to_incoming(
    event: Mapping[str, Any], *, team_id: str | None = None, bot_user_id: str | None = None
) -> IncomingMessage | None:
    """The message the bot should answer for a Slack event, or ``None``.

    Answered: a direct message (``message`` with ``channel_type: im``), a mention
    (``app_mention``, in the thread it starts), and a ``message`` in a thread without a
    mention (``metadata["slack"]["kind"] == "thread"``: answered only when the bot
    already holds that thread's conversation, which the caller checks). Ignored: other
    bots and the bot itself (``bot_id``, ``bot_message``, ``user == bot_user_id``), edits,
    deletions and joins (``subtype``), top-level channel chatter, and channel messages
    that mention the bot (their ``app_mention`` event is answered instead).
    """
    kind = _kind(event, bot_user_id)
    if kind is None:
        return None
    text = from_mrkdwn(str(event.get("text") or ""), bot_user_id=bot_user_id)
    if not text:
        return None
    team = str(team_id or event.get("team") or "-")
    channel, user, ts = str(event["channel"]), str(event["user"]), str(event["ts"])
    thread_ts = event.get("thread_ts")
    if kind == "dm":
        external_id = dm_key(team, user)
    else:
        thread_ts = thread_ts or ts  # a mention at the top level starts a thread under itself
        external_id = thread_key(team, channel, str(thread_ts))
    slack = {"kind": kind, "team": team, "channel": channel, "user": user, "ts": ts, "thread_ts": thread_ts}
    return IncomingMessage(
        text=text, channel=CHANNEL, external_id=external_id,
        channel_message_id=str(event.get("client_msg_id") or f"{channel}:{ts}"), metadata={"slack": slack},
    )


def _kind(event: Mapping[str, Any], bot_user_id: str | None) -> str | None:
    if event.get("type") not in ("app_mention", "message") or event.get("bot_id"):
        return None
    if event.get("subtype") not in _ANSWERED_SUBTYPES:
        return None
    if not event.get("user") or event.get("user") == bot_user_id or not event.get("channel") or not event.get("ts"):
        return None
    if event["type"] == "app_mention":
        return "mention"
    if event.get("channel_type") == "im":
        return "dm"
    if bot_user_id and f"<@{bot_user_id}" in str(event.get("text") or ""):
        return None
    thread_ts = event.get("thread_ts")
    return "thread" if thread_ts and thread_ts != event.get("ts") else None


_SLACK_MARKUP = re.compile(r"<([^<>]+)>")


def from_mrkdwn(text: str, *, bot_user_id: str | None = None) -> str:
    """Slack's message markup as plain text: the bot's mention dropped, links as ``label (url)``."""

    def plain(match: re.Match[str]) -> str:
        inner = match.group(1)
        target, _, label = inner.partition("|")
        if target.startswith("@"):
            return "" if target[1:] == bot_user_id else "@" + (label or target[1:])
        if target.startswith("#"):
            return "#" + (label or target[1:])
        if target.startswith("!"):
            return "@" + (label or target[1:].split("^")[0])
        return f"{label} ({target})" if label and label != target else target

    text = _SLACK_MARKUP.sub(plain, text)
    text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return re.sub(r"[ \t]{2,}", " ", text).strip()


# -- replies out ------------------------------------------------------------------------

def render(reply: Reply, *, handoff_button: bool = True) -> list[SlackMessage]:
    """The Slack messages of a reply: the first replaces the placeholder, the rest follow.

    Text goes in section blocks (<= 3,000 characters each, <= 50 blocks and 40,000
    characters per message); the last message (at most 6,000 characters of text, since a
    button click sends it back to the server) carries the citations (a context block)
    and the actions: 👍/👎 (value: the reply's message id) and "Talk to a human" (value:
    the conversation id; left out once a human holds the conversation).
    """
    tail = [block for block in (citations_block(reply.citations), _actions(reply, handoff_button)) if block]
    sections = split_text(to_mrkdwn(reply.text), SECTION_LIMIT) or [" "]
    last = [sections.pop()]  # the message with the buttons stays small: Slack sends it back on a click
    while sections and len(last) < BLOCK_LIMIT - 2 and sum(map(len, last)) + len(sections[-1]) <= BUTTONS_MESSAGE_CHARS:
        last.insert(0, sections.pop())
    messages: list[list[str]] = [[]]
    for piece in sections:
        current = messages[-1]
        if current and (len(current) >= BLOCK_LIMIT or sum(len(p) + 2 for p in current) + len(piece) > TEXT_LIMIT):
            messages.append(current := [])
        current.append(piece)
    messages = [group for group in messages if group] + [last]
    out: list[SlackMessage] = []
    for index, pieces in enumerate(messages):
        blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": p}} for p in pieces]
        if index == len(messages) - 1:
            blocks += tail
        out.append({"text": "\n\n".join(pieces), "blocks": blocks})
    return out


def render_partial(text: str) -> SlackMessage:
    """A streamed reply so far (a text-only update of the placeholder)."""
    mrkdwn = to_mrkdwn(text)
    if len(mrkdwn) > SECTION_LIMIT:
        mrkdwn = mrkdwn[: outside_markup(mrkdwn, SECTION_LIMIT - 2)]
    return {"text": mrkdwn + " …", "blocks": []}


def citations_block(citations: Sequence[Citation]) -> dict[str, Any] | None:
    """A context block listing the sources: ``<url|title>`` for a citation with a URL, else its source name."""
    if not citations:
        return None
    items = []
    for citation in citations:
        title = (citation.title or citation.source).strip()[:200]
        if citation.url and re.match(r"https?://", citation.url):
            items.append(f"[{citation.number}] <{url_target(citation.url)}|{escape(title)}>")
        else:
            items.append(f"[{citation.number}] {escape(citation.source)}")
    if len(items) > CONTEXT_ELEMENTS:
        items[CONTEXT_ELEMENTS - 1:] = ["  ".join(items[CONTEXT_ELEMENTS - 1:])[:SECTION_LIMIT]]
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": item} for item in items]}


def _actions(reply: Reply, handoff_button: bool) -> dict[str, Any] | None:
    elements = []
    if reply.message_id is not None and not reply.handoff:
        value = str(reply.message_id)
        elements += [_button("👍", FEEDBACK_UP, value), _button("👎", FEEDBACK_DOWN, value)]
    if handoff_button and not reply.handoff:
        elements.append(_button("Talk to a human", HANDOFF, reply.conversation_id))
    return {"type": "actions", "block_id": ACTIONS_BLOCK_ID, "elements": elements} if elements else None


def _button(label: str, action_id: str, value: str) -> dict[str, Any]:
    return {"type": "button", "text": {"type": "plain_text", "text": label, "emoji": True},
            "action_id": action_id, "value": value}


def without_buttons(
    blocks: Sequence[Mapping[str, Any]], action_ids: Sequence[str], note: str | None = None
) -> list[dict[str, Any]]:
    """A message's blocks with some buttons removed (an emptied actions block goes too),
    and a context ``note`` appended, to update a message once a button was used."""
    out: list[dict[str, Any]] = []
    for block in blocks:
        block = dict(block)
        if block.get("type") == "actions":
            block["elements"] = [e for e in block.get("elements", []) if e.get("action_id") not in action_ids]
            if not block["elements"]:
                continue
        out.append(block)
    if note:
        out.append({"type": "context", "elements": [{"type": "mrkdwn", "text": escape(note)}]})
    return out[:BLOCK_LIMIT]


def handoff_notice(permalink: str | None, *, user: str | None, conversation_id: str) -> SlackMessage:
    """The support channel's message announcing a handoff, linking to the thread."""
    who = f"<@{user}>" if user else "A user"
    where = f"<{url_target(permalink)}|Open the conversation in Slack>" if permalink else "(no link available)"
    text = f":raising_hand: {who} asked to talk to a human. {where}"
    context = {"type": "context", "elements": [{"type": "mrkdwn", "text": f"conversation `{escape(conversation_id)}`"}]}
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}, context]}


__all__ = [
    "SlackMessage", "citations_block", "dm_key", "escape", "from_mrkdwn", "handoff_notice", "render",
    "render_partial", "split_text", "thread_key", "to_incoming", "to_mrkdwn", "without_buttons",
]
