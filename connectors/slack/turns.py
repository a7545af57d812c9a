"""One Slack turn: find the conversation, post a placeholder, stream the answer into it.

The conversation of a direct message is the user's (a new one after
``slack.dm_idle_minutes`` without activity); the conversation of a mention is its thread,
and later messages in that thread are part of it without a new mention. While a human
holds a conversation, messages are recorded for them and the bot posts nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from datetime import datetime, timezone
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from botkit.bot import Bot
from botkit.config import SlackSettings
from botkit.errors import BotkitError, InvalidMessage
from botkit.messages import IncomingMessage, Reply, ReplyDelta, ReplyDone
from botkit.store.base import Conversation
from connectors.slack import translate
from connectors.slack.mrkdwn import to_mrkdwn

log = logging.getLogger("botkit.slack")

STREAM_UPDATE_S = 1.0  # at most one chat.update of a streamed answer per second
SORRY_TEXT = "Sorry, something went wrong on our side. Please try again in a moment."
_PLACEHOLDER_KEY = "slack_placeholder:"  # + event id: the placeholder's ts, so a retry reuses it


@dataclasses.dataclass(frozen=True)
class Place:
    """Where a reply goes: a channel and, for threads, the thread's root ``ts``."""

    channel: str
    thread_ts: str | None
    user: str | None = None


class SlackTurns:
    """Answers Slack messages with a bot and announces handoffs in the support channel."""

    def __init__(self, bot: Bot, client: AsyncWebClient, settings: SlackSettings) -> None:
        self.bot = bot
        self.client = client
        self.settings = settings

    async def answer(self, event_id: str, incoming: IncomingMessage) -> None:
        """Answer one message (the caller claimed its event)."""
        slack: dict[str, Any] = incoming.metadata["slack"]
        conversation = await self.conversation_for(incoming)
        if conversation is None:
            return  # a thread message in a thread the bot is not part of
        incoming = dataclasses.replace(incoming, conversation_id=conversation.id)
        place = Place(slack["channel"], slack["thread_ts"], slack["user"])
        if conversation.state == "handoff":
            await self.bot.handle(incoming)  # recorded for the human; the bot stays quiet
            return
        key = _PLACEHOLDER_KEY + event_id
        placeholder = conversation.metadata.get(key)
        if placeholder is None:
            posted = await self.client.chat_postMessage(
                channel=place.channel, thread_ts=place.thread_ts, text=translate.PLACEHOLDER_TEXT
            )
            placeholder = str(posted["ts"])
            await self.bot.store.update_metadata(conversation.id, {key: placeholder})
        try:
            reply = await self._stream(incoming, place, placeholder)
        except InvalidMessage as exc:  # too long, empty after cleaning: tell the user why
            await self.client.chat_update(channel=place.channel, ts=placeholder, text=exc.message, blocks=[])
            reply = None
        except BotkitError:
            await self.client.chat_update(channel=place.channel, ts=placeholder, text=SORRY_TEXT, blocks=[])
            raise
        if reply is not None:
            await self.post_reply(reply, place, placeholder)
        await self.bot.store.update_metadata(conversation.id, {key: None})

    async def conversation_for(self, incoming: IncomingMessage) -> Conversation | None:
        """The conversation of a message: found, or started; ``None`` for a thread
        follow-up in a thread the bot holds no conversation for.

        Starting one (or restarting an idle DM) happens under a lock named after the
        external id, so two messages arriving together, on any workers, share one.
        """
        slack: dict[str, Any] = incoming.metadata["slack"]
        kind, external_id = slack["kind"], str(incoming.external_id)
        found = await self._find(external_id)
        if found is not None and not (kind == "dm" and self._idle(found)):
            return found
        if found is None and kind == "thread":
            return None
        if found is None and slack["thread_ts"] == slack["ts"]:  # a mention starting its own thread: no rival
            return await self._create(external_id, slack)
        lock = "slack-" + hashlib.sha1(external_id.encode()).hexdigest()  # a turn-lock key of its own
        async with self.bot.store.turn_lock(lock, timeout=self.bot.config.limits.lock_timeout_s):
            found = await self._find(external_id)
            if found is not None and kind == "dm" and self._idle(found):
                await self.bot.store.set_state(found.id, "closed")  # a new DM conversation starts
                found = None
            return found if found is not None else await self._create(external_id, slack)

    async def _create(self, external_id: str, slack: dict[str, Any]) -> Conversation:
        metadata = {"slack": {k: slack[k] for k in ("team", "channel", "user", "thread_ts")}}
        return await self.bot.store.create_conversation(
            bot=self.bot.name, channel=translate.CHANNEL, external_id=external_id, metadata=metadata
        )

    async def _find(self, external_id: str) -> Conversation | None:
        store = self.bot.store
        return await store.find_conversation(bot=self.bot.name, channel=translate.CHANNEL, external_id=external_id)

    def _idle(self, conversation: Conversation) -> bool:
        if conversation.state != "bot" or conversation.updated_at is None:  # a human's conversation stays
            return False
        updated = conversation.updated_at
        updated = updated if updated.tzinfo else updated.replace(tzinfo=timezone.utc)
        idle_s = (datetime.now(timezone.utc) - updated).total_seconds()
        return idle_s > self.settings.dm_idle_minutes * 60

    async def _stream(self, incoming: IncomingMessage, place: Place, placeholder: str) -> Reply:
        text, last_update = "", time.monotonic()
        async for event in self.bot.handle_stream(incoming):
            if isinstance(event, ReplyDelta):
                text += event.text
                if time.monotonic() - last_update >= STREAM_UPDATE_S:
                    last_update = time.monotonic()
                    try:
                        partial = translate.render_partial(text)
                        await self.client.chat_update(channel=place.channel, ts=placeholder, **partial)
                    except SlackApiError as exc:  # a partial update is optional (rate limits)
                        log.info("slack: partial update skipped: %s", exc.response.get("error"))
            elif isinstance(event, ReplyDone):
                return event.reply
        raise BotkitError("the turn ended without a reply")  # pragma: no cover - a turn ends with ReplyDone

    async def post_reply(self, reply: Reply, place: Place, placeholder: str) -> None:
        """Replace the placeholder with the reply (split over follow-up messages when long)."""
        if not reply.text.strip():  # a human holds the conversation: post nothing
            await self.client.chat_delete(channel=place.channel, ts=placeholder)
            return
        messages = translate.render(reply, handoff_button=self.bot.config.escalation.enabled)
        await self.client.chat_update(channel=place.channel, ts=placeholder, **messages[0])
        for message in messages[1:]:
            await self.client.chat_postMessage(channel=place.channel, thread_ts=place.thread_ts, **message)
        if reply.handoff and not reply.duplicate:
            await self.announce_handoff(reply.conversation_id, place, place.thread_ts or placeholder)

    async def announce_handoff(self, conversation_id: str, place: Place, message_ts: str) -> None:
        """Post in ``slack.support_channel`` that a conversation waits for a human, with a link."""
        support = self.settings.support_channel
        if not support:
            log.warning("slack: conversation %s was handed off, but slack.support_channel is not set", conversation_id)
            return
        permalink: str | None = None
        try:
            found = await self.client.chat_getPermalink(channel=place.channel, message_ts=message_ts)
            permalink = str(found["permalink"])
        except SlackApiError as exc:
            log.warning("slack: no permalink for %s/%s: %s", place.channel, message_ts, exc.response.get("error"))
        notice = translate.handoff_notice(permalink, user=place.user, conversation_id=conversation_id)
        try:
            await self.client.chat_postMessage(channel=support, **notice)
        except SlackApiError as exc:  # the user's answer is out; a misconfigured channel is the operator's to fix
            log.error("slack: could not post the handoff of %s in slack.support_channel %s: %s (invite the bot "
                      "to that channel?)", conversation_id, support, exc.response.get("error"))

    async def post_agent_reply(self, conversation_id: str, text: str, *, agent: str | None = None) -> bool:
        """Post a human agent's reply (written in the console) where the conversation lives:
        its thread, or the user's DM. ``False`` when the conversation is not a Slack one."""
        conversation = await self.bot.store.get_conversation(conversation_id)
        slack = (conversation.metadata or {}).get("slack") if conversation is not None else None
        if not slack or not slack.get("channel"):
            return False
        thread_ts = slack.get("thread_ts") if conversation is not None and conversation.external_id and \
            conversation.external_id.startswith("thread:") else None
        heading = f"*{agent}* (support team)" if agent else "*Support team*"
        await self.client.chat_postMessage(
            channel=slack["channel"], thread_ts=thread_ts, text=f"{heading}\n{to_mrkdwn(text)}", unfurl_links=False,
        )
        return True

