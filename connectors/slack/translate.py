"""Pure translation between Slack and botkit: events in, Block Kit messages out.

``to_incoming(event)`` turns an Events API event into an :class:`IncomingMessage` (or
``None`` for what the bot must not answer); ``render(reply)`` turns a :class:`Reply` into
one or more Slack messages (``{"text": ..., "blocks": [...]}``) within Slack's limits;
``to_mrkdwn`` converts the model's Markdown to Slack's mrkdwn. No I/O here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from botkit.messages import Citation, IncomingMessage, Reply

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


# -- Markdown to mrkdwn -----------------------------------------------------------------

_FENCE = re.compile(r"^```[^\n]*\n(.*?)(?:^```[ \t]*$|\Z)", re.M | re.S)
_HEADING = re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+(.+?)[ \t#]*$")
_BULLET = re.compile(r"^([ \t]*)[-*+][ \t]+")
_INLINE = re.compile(r"(`[^`\n]+`)|!?\[([^\]\n]+)\]\(([^)\s]+)(?:[ \t]+\"[^\"\n]*\")?\)|<((?:https?|mailto):[^>\s]+)>")
_ITALIC = re.compile(r"(?<![*\w])\*(?![\s*])([^*\n]+?)(?<![\s*])\*(?![*\w])")
_BOLD = re.compile(r"(\*\*|__)(?!\s)(.+?)(?<!\s)\1")
_STRIKE = re.compile(r"~~(?!\s)(.+?)(?<!\s)~~")


def escape(text: str) -> str:
    """Escape the three characters Slack reserves for its markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_mrkdwn(markdown: str) -> str:
    """Convert Markdown to Slack mrkdwn.

    ``**bold**`` → ``*bold*``, ``*italic*`` → ``_italic_``, ``~~x~~`` → ``~x~``,
    ``[text](url)`` → ``<url|text>`` (http, https and mailto only), headings → bold lines,
    list bullets → ``•``; ``&``, ``<`` and ``>`` are escaped everywhere, code included.
    """
    out: list[str] = []
    position = 0
    for fence in _FENCE.finditer(markdown):
        out.append(_blocks(markdown[position:fence.start()]))
        out.append("```\n" + escape(fence.group(1).rstrip("\n")) + "\n```")
        position = fence.end()
    out.append(_blocks(markdown[position:]))
    return "".join(out).strip()


def _blocks(text: str) -> str:
    lines = []
    for line in text.split("\n"):
        heading = _HEADING.match(line)
        if heading:
            title = _inline(heading.group(1).replace("**", "").replace("__", ""))
            lines.append(f"*{title}*" if title else "")
            continue
        bullet = _BULLET.match(line)
        if bullet:
            line = f"{bullet.group(1)}• {line[bullet.end():]}"
        lines.append(_inline(line))
    return "\n".join(lines)


def _inline(text: str) -> str:
    out: list[str] = []
    position = 0
    for match in _INLINE.finditer(text):
        out.append(_emphasis(escape(text[position:match.start()])))
        code, label, url, auto = match.groups()
        if code:
            out.append(escape(code))
        elif auto:
            out.append(f"<{_url(auto)}>")
        elif re.match(r"(?:https?|mailto):", url or ""):
            out.append(f"<{_url(url)}|{escape(label.replace('**', '').replace('`', ''))}>")
        else:  # a relative or unsafe target is not made clickable
            out.append(_emphasis(escape(f"{label} ({url})")))
        position = match.end()
    out.append(_emphasis(escape(text[position:])))
    return "".join(out)


def _url(url: str) -> str:
    return escape(url).replace("|", "%7C")


def _emphasis(text: str) -> str:
    text = _ITALIC.sub(r"_\1_", text)
    text = _BOLD.sub(r"*\2*", text)
    return _STRIKE.sub(r"~\1~", text)


# -- splitting at Slack's limits ----------------------------------------------------------

def split_text(text: str, limit: int) -> list[str]:
    """Split mrkdwn into pieces of at most ``limit`` characters.

    Cuts at a paragraph break, else a line break, else a space, else anywhere; never
    inside a ``<link|label>`` or an ``&amp;`` entity; a code block cut in two is closed
    and reopened so both halves render as code.
    """
    if limit < 16:
        raise ValueError("limit must be at least 16 characters")
    pieces: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        cut = _cut(rest, limit - 4)  # room to close a code fence
        piece, rest = rest[:cut].rstrip(), rest[cut:].lstrip()
        if piece.count("```") % 2:
            piece += "\n```"
            rest = "```\n" + rest
        pieces.append(piece)
    if rest:
        pieces.append(rest)
    return pieces


def _cut(text: str, limit: int) -> int:
    window = text[:limit]
    for separator in ("\n\n", "\n", " "):
        index = window.rfind(separator)
        if index > limit // 3:
            return _outside_markup(text, index + len(separator))
    return _outside_markup(text, limit)


def _outside_markup(text: str, cut: int) -> int:
    opened, closed = text.rfind("<", 0, cut), text.rfind(">", 0, cut)
    if opened > closed and opened > 0:
        cut = opened
    amp = text.rfind("&", max(0, cut - 6), cut)
    if amp != -1 and ";" not in text[amp:cut]:
        cut = amp if amp > 0 else cut
    return max(cut, 1)


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
        mrkdwn = mrkdwn[: _outside_markup(mrkdwn, SECTION_LIMIT - 2)]
    return {"text": mrkdwn + " …", "blocks": []}


def citations_block(citations: Sequence[Citation]) -> dict[str, Any] | None:
    """A context block listing the sources: ``<url|title>`` when there is a url, else the source name."""
    if not citations:
        return None
    items = []
    for citation in citations:
        title = (citation.title or citation.source).strip()[:200]
        if citation.url and re.match(r"https?://", citation.url):
            items.append(f"[{citation.number}] <{_url(citation.url)}|{escape(title)}>")
        else:
            items.append(f"[{citation.number}] {escape(citation.source if not citation.title else title)}")
    if len(items) > CONTEXT_ELEMENTS:
        items[CONTEXT_ELEMENTS - 1:] = ["  ".join(items[CONTEXT_ELEMENTS - 1:])[:SECTION_LIMIT]]
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": item} for item in items]}


def _actions(reply: Reply, handoff_button: bool) -> dict[str, Any] | None:
    elements = []
    if reply.message_id is not None and not reply.handoff:
        elements += [_button("👍", FEEDBACK_UP, str(reply.message_id)), _button("👎", FEEDBACK_DOWN, str(reply.message_id))]
    if handoff_button and not reply.handoff:
        elements.append(_button("Talk to a human", HANDOFF, reply.conversation_id))
    return {"type": "actions", "block_id": ACTIONS_BLOCK_ID, "elements": elements} if elements else None


def _button(label: str, action_id: str, value: str) -> dict[str, Any]:
    return {"type": "button", "text": {"type": "plain_text", "text": label, "emoji": True},
            "action_id": action_id, "value": value}


def without_buttons(blocks: Sequence[Mapping[str, Any]], action_ids: Sequence[str], note: str | None = None) -> list[dict[str, Any]]:
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
    where = f"<{_url(permalink)}|Open the conversation in Slack>" if permalink else "(no link available)"
    text = f":raising_hand: {who} asked to talk to a human. {where}"
    context = {"type": "context", "elements": [{"type": "mrkdwn", "text": f"conversation `{escape(conversation_id)}`"}]}
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}, context]}
