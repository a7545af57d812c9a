"""The human handoff inbox: the queue, claims, agent replies, internal notes, hand-back, close.

What the agent console does, without the web: conversations in ``handoff`` wait in the
queue (oldest first); an agent *claims* one (a row of ``conversation_claims`` keyed by the
conversation, so of two agents claiming at once exactly one wins), answers it (an ``agent``
message the visitor sees in the widget), leaves internal notes (their own table: never in
the visitor's history), then hands it back to the bot or closes it with a resolution.
Agent replies and closes are told to the bot's observers (webhooks, connectors).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from botkit._tables import agent_notes, agents, conversation_claims, reading, writing
from botkit.agents import Agent
from botkit.errors import BotkitError
from botkit.policy import wants_human
from botkit.store.base import Conversation, ConversationStore, Message
from botkit.webhooks import BotEvent, Observer, notify


class InboxError(BotkitError):
    """An agent action that is not allowed now (not claimed, claimed by someone else, wrong state)."""

    user_safe = True


class NotVisible(InboxError):
    """The conversation does not exist or belongs to a bot the agent is not assigned to."""


@dataclass(frozen=True)
class Claim:
    """Who holds a conversation."""

    conversation_id: str
    agent_id: str
    agent_email: str
    claimed_at: datetime


@dataclass(frozen=True)
class Note:
    """An internal note on a conversation (agents only)."""

    id: int
    conversation_id: str
    author: str | None
    text: str
    created_at: datetime


@dataclass(frozen=True)
class QueueItem:
    """A conversation waiting for a person."""

    conversation: Conversation
    waiting_s: float
    question: str
    reason: str
    claim: Claim | None


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


_REQUEST_WORDS = frozenset(
    ["i", "i'd", "id", "i'm", "im", "would", "like", "want", "wanna", "need", "to", "please", "pls", "can", "could", "you", "me", "let", "a", "an", "the", "now", "just", "talk", "speak", "chat", "with", "get", "give", "put", "connect", "transfer", "pass", "through", "human", "humans", "person", "people", "agent", "agents", "representative", "rep", "operator", "someone", "somebody", "real", "actual", "live", "staff", "support", "team", "customer", "service", "manager", "supervisor", "hi", "hello", "hey", "ok", "okay", "is", "there", "be"]
)
_WORD = re.compile(r"[^\W\d_][\w'’]*")


def is_bare_request(text: str) -> bool:
    """Whether ``text`` only asks for a person ("talk to a human, please"), with no question in it."""
    if not wants_human(text):
        return False
    rest = [w for w in _WORD.findall(text.lower()) if w.replace("’", "'") not in _REQUEST_WORDS]
    return len(rest) < 3


def visitor_question(history: list[Message]) -> str:
    """The visitor's question: their last message that is not only a request for a person
    (else that request)."""
    users = [m for m in history if m.role == "user"]
    for message in reversed(users):
        if not is_bare_request(message.text):
            return message.text
    return users[-1].text if users else ""


class Inbox:
    """Agent actions over the conversation store and the claims/notes tables.

    ``store`` is the bot's (open) store; ``engine`` reaches the same database;
    ``observers`` (usually ``bot.observers``) hear ``message.created`` for agent replies and
    ``conversation.closed``.
    """

    def __init__(self, *, store: ConversationStore, engine: AsyncEngine, observers: list[Observer] | None = None) -> None:
        self.store = store
        self.engine = engine
        self.observers = observers if observers is not None else []

    async def conversation(self, agent: Agent, conversation_id: str) -> Conversation:
        """The conversation if ``agent`` may see it, else :class:`NotVisible`."""
        conversation = await self.store.get_conversation(conversation_id)
        if conversation is None or not agent.can_see(conversation.bot):
            raise NotVisible("no such conversation, or not one of your bots")
        return conversation

    async def queue(self, agent: Agent, *, bots: list[str] | None = None, limit: int = 100) -> list[QueueItem]:
        """Conversations waiting for a person that ``agent`` may see, oldest handoff first."""
        names = [None] if agent.role == "admin" and bots is None else [b for b in (bots or agent.bots) if agent.can_see(b)]
        waiting: list[Conversation] = []
        for name in names:
            waiting += await self.store.list_conversations(bot=name, state="handoff", limit=limit)
        now = time.time()

        def since(c: Conversation) -> float:
            return float(c.metadata.get("handoff_at") or (c.updated_at.timestamp() if c.updated_at else now))

        waiting.sort(key=since)
        claims = await self.claims([c.id for c in waiting[:limit]])
        items = []
        for c in waiting[:limit]:
            history = await self.store.history(c.id, limit=20)
            items.append(QueueItem(conversation=c, waiting_s=max(0.0, now - since(c)), question=visitor_question(history),
                                   reason=str(c.metadata.get("handoff_reason") or ""), claim=claims.get(c.id)))
        return items

    async def claims(self, conversation_ids: list[str]) -> dict[str, Claim]:
        """The claims on these conversations, by conversation id."""
        if not conversation_ids:
            return {}
        query = (select(conversation_claims, agents.c.email).join(agents, agents.c.id == conversation_claims.c.agent_id)
                 .where(conversation_claims.c.conversation_id.in_(conversation_ids)))
        async with reading(self.engine, "read claims") as conn:
            rows = (await conn.execute(query)).all()
        return {r.conversation_id: Claim(r.conversation_id, r.agent_id, r.email, _utc(r.claimed_at)) for r in rows}

    async def claim_of(self, conversation_id: str) -> Claim | None:
        """Who holds the conversation, if anyone."""
        return (await self.claims([conversation_id])).get(conversation_id)

    async def claim(self, agent: Agent, conversation_id: str) -> Claim:
        """Take the conversation. Atomic: of two agents claiming at once, one gets
        :class:`InboxError` naming the other. Claiming one's own claim again is a no-op."""
        conversation = await self.conversation(agent, conversation_id)
        if conversation.state != "handoff":
            raise InboxError("only conversations waiting for a person can be claimed")
        at = datetime.now(timezone.utc)
        values = {"conversation_id": conversation_id, "agent_id": agent.id, "claimed_at": at}
        try:
            async with writing(self.engine, "claim a conversation", passthrough=(IntegrityError,)) as conn:
                await conn.execute(conversation_claims.insert().values(values))
        except IntegrityError:
            holder = await self.claim_of(conversation_id)
            if holder is not None and holder.agent_id != agent.id:
                raise InboxError(f"{holder.agent_email} already claimed this conversation") from None
            if holder is None:  # released in between: try once more
                return await self.claim(agent, conversation_id)
            return holder
        return Claim(conversation_id, agent.id, agent.email, at)

    async def _holding(self, agent: Agent, conversation_id: str, *, admin_override: bool) -> Conversation:
        conversation = await self.conversation(agent, conversation_id)
        holder = await self.claim_of(conversation_id)
        mine = holder is not None and holder.agent_id == agent.id
        if not mine and not (admin_override and agent.role == "admin"):
            who = f"{holder.agent_email} holds it" if holder else "claim it first"
            raise InboxError(f"you do not hold this conversation ({who})")
        return conversation

    async def release(self, agent: Agent, conversation_id: str) -> None:
        """Give up a claim (admins may release anyone's)."""
        await self._holding(agent, conversation_id, admin_override=True)
        await self._unclaim(conversation_id)

    async def _unclaim(self, conversation_id: str) -> None:
        async with writing(self.engine, "release a conversation") as conn:
            await conn.execute(delete(conversation_claims).where(conversation_claims.c.conversation_id == conversation_id))

    async def reply(self, agent: Agent, conversation_id: str, text: str) -> Message:
        """Answer the visitor as ``agent`` (who must hold the conversation)."""
        text = text.strip()
        if not text:
            raise InboxError("the reply is empty")
        conversation = await self._holding(agent, conversation_id, admin_override=False)
        if conversation.state != "handoff":
            raise InboxError("this conversation is no longer waiting for a person")
        message = await self.store.add_bot_message(conversation_id, text, reply_to=None, role="agent")
        data = {"message": {"id": message.id, "role": "agent", "text": text, "agent": agent.email},
                "channel": conversation.channel, "external_id": conversation.external_id}
        await notify(self.observers, [BotEvent("message.created", conversation.bot, conversation_id, data)])
        return message

    async def add_note(self, agent: Agent, conversation_id: str, text: str) -> Note:
        """Attach an internal note (any agent who may see the conversation)."""
        text = text.strip()
        if not text:
            raise InboxError("the note is empty")
        await self.conversation(agent, conversation_id)
        at = datetime.now(timezone.utc)
        async with writing(self.engine, "add a note") as conn:
            result = await conn.execute(agent_notes.insert().values(
                conversation_id=conversation_id, agent_id=agent.id, text=text, created_at=at))
            note_id = int(result.inserted_primary_key[0])  # type: ignore[index]
        return Note(note_id, conversation_id, agent.email, text, at)

    async def notes(self, agent: Agent, conversation_id: str) -> list[Note]:
        """The conversation's notes, oldest first."""
        await self.conversation(agent, conversation_id)
        query = (select(agent_notes, agents.c.email).outerjoin(agents, agents.c.id == agent_notes.c.agent_id)
                 .where(agent_notes.c.conversation_id == conversation_id).order_by(agent_notes.c.id))
        async with reading(self.engine, "read notes") as conn:
            rows = (await conn.execute(query)).all()
        return [Note(r.id, r.conversation_id, r.email, r.text, _utc(r.created_at)) for r in rows]

    async def hand_back(self, agent: Agent, conversation_id: str) -> Conversation:
        """Give the conversation back to the bot (its claim ends)."""
        conversation = await self._holding(agent, conversation_id, admin_override=True)
        await self.store.update_metadata(conversation_id, {"handed_back_at": time.time(), "handed_back_by": agent.email})
        updated = await self.store.set_state(conversation.id, "bot")
        await self._unclaim(conversation_id)
        return updated

    async def close(self, agent: Agent, conversation_id: str, resolution: str) -> Conversation:
        """Close the conversation with a resolution tag (its claim ends)."""
        resolution = resolution.strip()[:100] or "resolved"
        conversation = await self._holding(agent, conversation_id, admin_override=True)
        patch: dict[str, Any] = {"resolution": resolution, "closed_by": agent.email, "closed_at": time.time()}
        await self.store.update_metadata(conversation_id, patch)
        updated = await self.store.set_state(conversation.id, "closed")
        await self._unclaim(conversation_id)
        data = {"resolution": resolution, "closed_by": agent.email, "channel": conversation.channel}
        await notify(self.observers, [BotEvent("conversation.closed", conversation.bot, conversation_id, data)])
        return updated


__all__ = ["Claim", "Inbox", "InboxError", "NotVisible", "Note", "QueueItem", "is_bare_request", "visitor_question"]
