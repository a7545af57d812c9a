"""The Slack connector: a Bolt ``AsyncApp`` whose listeners hand Slack events to a bot.

Bolt verifies every request (signature, 5-minute timestamp window: 401 otherwise, before
any listener or the event claim runs), answers URL verification and drops the bot's own
events. :class:`~connectors.slack.delivery.EventDelivery` makes each event answered
exactly once; :class:`~connectors.slack.turns.SlackTurns` answers it. The buttons under an
answer record feedback (👍/👎) or hand the conversation to a human.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import aiohttp
from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_sdk.errors import SlackClientError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from botkit.bot import Bot
from botkit.config import SlackSettings
from botkit.errors import ConfigError
from botkit.webhooks import BotEvent
from connectors.slack import translate
from connectors.slack.delivery import EventDelivery
from connectors.slack.turns import Place, SlackTurns

log = logging.getLogger("botkit.slack")

RECOVERY_MARGIN_S = 30.0  # beyond the turn deadline before another worker takes an event over
FEEDBACK_THANKS = "Thanks for your feedback!"
_AUTH_TEST_ERRORS = (SlackClientError, aiohttp.ClientError, asyncio.TimeoutError)


class SlackConnector:
    """A bot in Slack: ``connector.app`` is the Bolt app to serve (HTTP or Socket Mode).

    ``settings`` replaces the bot's ``slack:`` section. ``recovery_grace_s`` (default: the
    turn deadline + 30 s) is how long a claimed event may stay unfinished before another
    worker, or this one after a restart, answers it instead. ``max_concurrent_answers``
    (default: ``slack.max_concurrent_answers``) bounds the answers generated at once; the
    other events wait in a queue, already claimed. Call :meth:`start` once the event loop
    runs and :meth:`aclose` at shutdown.
    """

    def __init__(
        self, bot: Bot, *, settings: SlackSettings | None = None, recovery_grace_s: float | None = None,
        sweep_interval_s: float = 60.0, max_concurrent_answers: int | None = None,
    ) -> None:
        self.bot = bot
        self.settings = settings or bot.config.slack
        if not self.settings.bot_token:
            raise ConfigError("the Slack connector needs slack.bot_token", hint="set SLACK_BOT_TOKEN (xoxb-...)")
        self.client = AsyncWebClient(token=self.settings.bot_token, base_url=self.settings.api_url)
        self.client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=2))
        self.app = AsyncApp(
            name="botkit", signing_secret=self.settings.signing_secret or "", client=self.client,
            process_before_response=False, logger=logging.getLogger("botkit.slack.bolt"),
        )
        self.turns = SlackTurns(bot, self.client, self.settings)
        grace = recovery_grace_s
        if grace is None:
            grace = bot.config.limits.turn_timeout_s + RECOVERY_MARGIN_S
        self.delivery = EventDelivery(
            bot, wants=self._wants, process=self._process, grace_s=grace, sweep_interval_s=sweep_interval_s,
            max_concurrent=max_concurrent_answers or self.settings.max_concurrent_answers,
        )
        self._bot_user_id: str | None = None
        self.app.use(self.delivery.middleware)  # claims and acknowledges events: no event listeners
        self.app.action(translate.FEEDBACK_UP)(self._on_feedback)
        self.app.action(translate.FEEDBACK_DOWN)(self._on_feedback)
        self.app.action(translate.HANDOFF)(self._on_handoff)

    async def start(self) -> None:
        """Start the bot and the recovery of events left unfinished by a dead worker."""
        if self.client.session is None:  # one connection pool for every Web API call (keep-alive)
            self.client.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.client.timeout))
        await self.bot.start()
        try:  # known before the first event, so that its ack does not wait for auth.test
            await self._own_user_id()
        except _AUTH_TEST_ERRORS as exc:
            log.warning("slack: auth.test failed at start-up (%s); retried with the first event", exc)
        await self.delivery.start()
        if self._relay_agent_reply not in self.bot.observers:
            self.bot.observers.append(self._relay_agent_reply)

    async def aclose(self, timeout: float = 10.0) -> None:
        """Stop recovery and let events in progress finish (up to ``timeout`` s)."""
        if self._relay_agent_reply in self.bot.observers:
            self.bot.observers.remove(self._relay_agent_reply)
        await self.delivery.aclose(timeout)
        session, self.client.session = self.client.session, None
        if session is not None:
            await session.close()

    # -- events ------------------------------------------------------------------------

    def _wants(self, body: dict[str, Any], bot_user_id: str | None) -> bool:
        self._bot_user_id = bot_user_id or self._bot_user_id
        event = body.get("event") or {}
        return translate.to_incoming(event, team_id=body.get("team_id"), bot_user_id=bot_user_id) is not None

    async def _process(self, body: dict[str, Any], bot_user_id: str | None) -> None:
        bot_user_id = bot_user_id or await self._own_user_id()
        incoming = translate.to_incoming(body.get("event") or {}, team_id=body.get("team_id"), bot_user_id=bot_user_id)
        if incoming is not None:
            await self.turns.answer(str(body["event_id"]), incoming)

    async def _own_user_id(self) -> str | None:
        if self._bot_user_id is None:
            self._bot_user_id = (await self.client.auth_test()).get("user_id")
        return self._bot_user_id

    async def _relay_agent_reply(self, event: BotEvent) -> None:
        """A bot observer: a human agent's reply from the console goes into the Slack thread."""
        message = event.data.get("message") or {}
        if event.type != "message.created" or event.data.get("channel") != translate.CHANNEL:
            return
        if message.get("role") != "agent" or not message.get("text"):
            return
        await self.turns.post_agent_reply(event.conversation_id, str(message["text"]), agent=message.get("agent"))

    # -- buttons -----------------------------------------------------------------------

    async def _on_feedback(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        self.delivery.spawn(self._feedback(body, action))

    async def _feedback(self, body: dict[str, Any], action: dict[str, Any]) -> None:
        rating = 1 if action.get("action_id") == translate.FEEDBACK_UP else -1
        try:
            message_id = int(action.get("value") or "")
        except ValueError:
            return
        await self.bot.start()
        message = await self.bot.store.get_message(message_id)
        conversation = await self.bot.store.get_conversation(message.conversation_id) if message else None
        if message is None or conversation is None or conversation.channel != translate.CHANNEL:
            log.warning("slack: feedback on unknown message %s ignored", message_id)
            return
        await self.bot.feedback(conversation.id, rating=rating, message_id=message_id)
        await self._remove_buttons(body, [translate.FEEDBACK_UP, translate.FEEDBACK_DOWN], FEEDBACK_THANKS)

    async def _on_handoff(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        self.delivery.spawn(self._handoff(body, str(action.get("value") or "")))

    async def _handoff(self, body: dict[str, Any], conversation_id: str) -> None:
        await self.bot.start()
        store = self.bot.store
        conversation = await store.get_conversation(conversation_id) if conversation_id else None
        if conversation is None or conversation.channel != translate.CHANNEL:
            log.warning("slack: handoff of unknown conversation %r ignored", conversation_id)
            return
        message = body.get("message") or {}
        channel, user = (body.get("channel") or {}).get("id"), (body.get("user") or {}).get("id")
        place = Place(str(channel), message.get("thread_ts"), user)
        async with store.turn_lock(conversation.id, timeout=self.bot.config.limits.lock_timeout_s):
            current = await store.get_conversation(conversation.id)
            if current is not None and current.state != "handoff":
                reason = "asked for a human (Slack button)"
                patch = {"handoff_reason": reason, "handoff_at": time.time(), "abstentions": None}
                await store.update_metadata(conversation.id, patch)
                await self.bot.set_state(conversation.id, "handoff")
                text = self.bot.config.escalation.message
                await store.add_bot_message(conversation.id, text, reply_to=None)
                await self.client.chat_postMessage(channel=place.channel, thread_ts=place.thread_ts, text=text)
                await self.turns.announce_handoff(conversation.id, place, place.thread_ts or str(message.get("ts")))
        await self._remove_buttons(body, [translate.HANDOFF], None)

    async def _remove_buttons(self, body: dict[str, Any], action_ids: list[str], note: str | None) -> None:
        message, channel = body.get("message") or {}, (body.get("channel") or {}).get("id")
        if not message.get("ts") or not channel:
            return
        blocks = translate.without_buttons(message.get("blocks") or [], action_ids, note)
        await self.client.chat_update(channel=channel, ts=message["ts"], text=message.get("text") or " ", blocks=blocks)
