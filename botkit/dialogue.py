"""The dialogue manager: one turn in, a grounded, cited reply out, safely in SQL.

The turn (DESIGN.md): record the user message (idempotent) → take the conversation's turn
lock → state check (a human holds it: no bot reply) → escalation check → history-aware
retrieval → prompt → router → stream → record the reply. ``handle`` and ``handle_stream``
share one code path (:meth:`DialogueManager._turn`), so the two never drift apart.

Retrieval is speculative (``knowledge.speculative_retrieval``, on by default): the message
as written starts retrieving when the turn starts, beside the recording and the lock, and
the turn uses that result when the history leaves the query unchanged; a follow-up that
needs earlier messages as context is retrieved again with them. The pipeline's order is
the same for everything the turn writes or decides; only the read of the index starts early.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import re
import threading
import time
import unicodedata
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from botkit import metrics  # observability: stage timings, the turn's log line
from botkit.agents import (
    handoff_message,  # escalation.message, or when people answer (business hours)
)
from botkit.backends.base import Completion, Done, TextDelta
from botkit.config import BotConfig
from botkit.errors import BackendError, InvalidMessage, StoreError
from botkit.messages import (
    Citation,
    IncomingMessage,
    Reply,
    ReplyCitations,
    ReplyDelta,
    ReplyDone,
    ReplyEvent,
)
from botkit.policy import Decision, EscalationPolicy
from botkit.prompt import HistoryTurn, LeakGuard, build_prompt, leaks_instructions
from botkit.router import Router
from botkit.store.base import Conversation, ConversationStore, Message
from knowledge.errors import KnowledgeError
from knowledge.query import contextualize
from knowledge.types import Passage

log = logging.getLogger("botkit.turn")

ABSTAIN_TEXT = (
    "I couldn't find an answer to that in our help centre. Could you rephrase it, "
    "or would you like me to connect you with a person? Just say \"talk to a human\"."
)
KB_DOWN_TEXT = (
    "Sorry, I can't reach our knowledge base right now, so I can't answer reliably. "
    "Please try again in a minute, or say \"talk to a human\" to reach a person."
)
FAILURE_TEXT = (
    "Sorry, I couldn't generate an answer just now. Please try again in a moment, "
    "or say \"talk to a human\" to reach a person."
)
LEAK_TEXT = "Sorry, I can't share that. Is there something about our product I can help you with?"
HANDOFF_WAITING_TEXT = ""
_CITE = re.compile(r"\[(\d{1,2})\]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_CONVERSATION_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_CONTROL = {c for c in map(chr, range(32)) if c not in "\n\t"} | {"\x7f"}


RETRIEVAL_WORKERS = 32
"""Threads that run retrievals (query embedding, vector and lexical search) off the event loop.

A pool of its own: asyncio's default pool has ``min(32, CPUs + 4)`` threads, 6 on a
2-core machine, so 16 concurrent turns would queue for it (behind the store's and anyone
else's ``to_thread`` work), and the query embedder could batch at most 6 queries at a time.
The threads mostly wait (on the embedder's batch, on Chroma, on SQLite), so more threads
than cores is the point.
"""

_retrieval_pool: ThreadPoolExecutor | None = None
_retrieval_pool_lock = threading.Lock()


def retrieval_executor() -> ThreadPoolExecutor:
    """The process's retrieval thread pool (:data:`RETRIEVAL_WORKERS` threads, started lazily)."""
    global _retrieval_pool
    if _retrieval_pool is None:
        with _retrieval_pool_lock:
            if _retrieval_pool is None:
                _retrieval_pool = ThreadPoolExecutor(max_workers=RETRIEVAL_WORKERS, thread_name_prefix="botkit-retrieve")
    return _retrieval_pool


class Retriever(Protocol):
    """What the dialogue manager needs of the knowledge base."""

    def retrieve(self, query: str, *, k: int | None = None, message: str | None = None) -> list[Passage]:
        """Ranked passages above the relevance threshold (possibly none). ``message``: the
        user's own message when ``query`` also holds earlier ones as context."""
        ...


def _discard(future: asyncio.Future[Any]) -> None:
    """Retrieve a speculative retrieval's outcome nobody waits for (no 'never retrieved' warning)."""
    if not future.cancelled():
        future.exception()


def clean_text(text: object, *, max_chars: int) -> str:
    """Validate and normalise a user message, or raise :class:`InvalidMessage`.

    Control characters (except newline and tab) are removed, invalid surrogates become
    U+FFFD, the text is NFC-normalised and stripped.
    """
    if not isinstance(text, str):
        raise InvalidMessage("text: must be a string")
    if len(text) > max_chars:
        raise InvalidMessage(f"text: the message is {len(text)} characters long; the limit is {max_chars} (limits.max_message_chars)")
    text = _SURROGATE.sub("\ufffd", text)
    text = "".join(ch for ch in text if ch not in _CONTROL)
    text = unicodedata.normalize("NFC", text).strip()
    if not text:
        raise InvalidMessage("text: the message is empty")
    return text


def _reply_budget(config: BotConfig, backend: object) -> int:
    """Tokens kept free for the answer: the generating backend's own cap."""
    if getattr(backend, "kind", "") == "transformers":
        return config.transformers.max_new_tokens
    return config.openai.max_tokens


def citations_for(completion: Completion, passages: Sequence[Passage]) -> list[Citation]:
    """The passages a reply cites, numbered as in the prompt."""
    numbers = list(completion.cited) or [int(n) for n in _CITE.findall(completion.text)]
    seen: list[int] = []
    for number in numbers:
        if 1 <= number <= len(passages) and number not in seen:
            seen.append(number)
    if not seen and passages and not completion.abstained:
        seen = [1]
    return [_citation(number, passages[number - 1]) for number in seen]


def _citation(number: int, passage: Passage) -> Citation:
    snippet = passage.metadata.get("answer") or passage.text
    snippet = " ".join(str(snippet).split())
    return Citation(
        number=number,
        source=passage.source,
        title=passage.title,
        snippet=snippet[:240] + ("…" if len(snippet) > 240 else ""),
        section=passage.section,
        url=passage.url,
    )


class DialogueManager:
    """Runs turns for one bot over a store, a retriever and a router."""

    def __init__(
        self,
        *,
        config: BotConfig,
        store: ConversationStore,
        retriever: Retriever,
        router: Router,
        policy: EscalationPolicy | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.retriever = retriever
        self.router = router
        self.policy = policy or EscalationPolicy(config.escalation)

    async def handle(self, incoming: IncomingMessage) -> Reply:
        """Run one turn and return the stored reply."""
        reply: Reply | None = None
        async for event in self._turn(incoming, streaming=False):
            if isinstance(event, ReplyDone):
                reply = event.reply
        assert reply is not None  # _turn always ends with ReplyDone
        return reply

    def handle_stream(self, incoming: IncomingMessage) -> AsyncIterator[ReplyEvent]:
        """Run one turn, yielding text deltas, then the citations, then the final reply.

        The final :class:`ReplyDone` carries the stored reply; its text is authoritative
        (it replaces streamed text when a backend failed mid-stream).
        """
        return self._turn(incoming, streaming=True)

    async def conversation_for(self, incoming: IncomingMessage) -> Conversation:
        """Find or start the conversation a message belongs to."""
        store, bot = self.store, self.config.name
        if incoming.conversation_id:
            if not _CONVERSATION_ID.fullmatch(incoming.conversation_id):
                raise InvalidMessage(
                    "conversation_id: use 1 to 64 letters, digits, '.', '_', ':' or '-'"
                )
            found = await store.get_conversation(incoming.conversation_id)
            if found is not None:
                return found
            try:
                return await store.create_conversation(
                    bot=bot, channel=incoming.channel, external_id=incoming.external_id,
                    metadata=incoming.metadata or None, conversation_id=incoming.conversation_id,
                )
            except StoreError:  # started by a concurrent turn with the same new id
                found = await store.get_conversation(incoming.conversation_id)
                if found is None:
                    raise
                return found
        if incoming.external_id:
            found = await store.find_conversation(bot=bot, channel=incoming.channel, external_id=incoming.external_id)
            if found is not None:
                return found
        return await store.create_conversation(
            bot=bot, channel=incoming.channel, external_id=incoming.external_id, metadata=incoming.metadata or None
        )

    async def _conversation_id(self, incoming: IncomingMessage) -> str:
        """The id of the conversation a message belongs to: the one it names (started by
        the store when new), else found or started by :meth:`conversation_for`."""
        if incoming.conversation_id:
            if not _CONVERSATION_ID.fullmatch(incoming.conversation_id):
                raise InvalidMessage("conversation_id: use 1 to 64 letters, digits, '.', '_', ':' or '-'")
            return incoming.conversation_id
        return (await self.conversation_for(incoming)).id

    async def _turn(self, incoming: IncomingMessage, *, streaming: bool) -> AsyncIterator[ReplyEvent]:
        started = time.perf_counter()
        metrics.begin_turn(self.config)  # observability
        limits = self.config.limits
        text = clean_text(incoming.text, max_chars=limits.max_message_chars)
        # Retrieval of the message as it stands starts now, beside the store's work; _answer
        # uses it unless the history turns the message into a follow-up with context.
        speculative = self._start_retrieve(text.strip()) if self.config.knowledge.speculative_retrieval else None
        try:
            conversation_id = await self._conversation_id(incoming)
            lock_requested = time.perf_counter()  # observability
            async for event in self._locked_turn(incoming, conversation_id, text, started, lock_requested, speculative,
                                                 streaming=streaming):
                yield event
        finally:
            if speculative is not None:  # used or not, its error (if any) is retrieved: no warning
                speculative.add_done_callback(_discard)

    async def _locked_turn(
        self, incoming: IncomingMessage, conversation_id: str, text: str, started: float, lock_requested: float,
        speculative: asyncio.Future[list[Passage]] | None, *, streaming: bool,
    ) -> AsyncIterator[ReplyEvent]:
        limits = self.config.limits
        # Record the user message (idempotent), then the lock, with the conversation as read
        # inside it (a human may have taken over) and the history window: one unit of work
        # where the store can.
        async with self.store.user_turn(
            conversation_id, text, bot=self.config.name, channel=incoming.channel, external_id=incoming.external_id,
            metadata=incoming.metadata or None, channel_message_id=incoming.channel_message_id,
            timeout=limits.lock_timeout_s, history=limits.history_turns + 1,
        ) as turn:
            conversation, user, history = turn.conversation, turn.message, turn.history
            if turn.reply is not None:  # a resent message whose turn is done: its stored reply
                yield ReplyDone(self._reply_from_message(conversation, turn.reply, duplicate=True))
                return
            metrics.lock_waited(time.perf_counter() - lock_requested)  # observability: with the recording
            if conversation.state == "closed":
                conversation = await self.store.set_state(conversation.id, "bot")
            if conversation.state == "handoff":
                yield ReplyDone(Reply(conversation_id=conversation.id, text=HANDOFF_WAITING_TEXT, handoff=True, reply_to=user.id))
                return
            decision = self.policy.before_answer(text)
            if decision.escalate:
                reply = await self._hand_off(conversation, user, decision, started)
                yield ReplyDelta(reply.text)
                yield ReplyDone(reply)
                return
            async for event in self._answer(conversation, user, text, history, started, speculative,
                                            streaming=streaming):
                yield event

    async def _answer(
        self, conversation: Conversation, user: Message, text: str, window: Sequence[Message], started: float,
        speculative: asyncio.Future[list[Passage]] | None = None, *, streaming: bool,
    ) -> AsyncIterator[ReplyEvent]:
        history = [m for m in window if m.id != user.id and m.role in ("user", "assistant", "agent")]
        query = contextualize(text, [m.text for m in history if m.role == "user"])
        try:
            if speculative is not None and query == text.strip():
                passages = await speculative  # started with the turn, for this very query
            else:
                passages = await self._retrieve(query, message=text)
        except KnowledgeError as exc:
            log.warning("knowledge base unavailable: %s", exc)
            reply = await self._record(conversation, user, KB_DOWN_TEXT, [], None, started, abstained=True)
            yield ReplyDelta(reply.text)
            yield ReplyDone(reply)
            return
        if not passages:
            async for event in self._abstain(conversation, user, started):
                yield event
            return
        backend = self.router.backends[0]
        prompt = build_prompt(
            persona=self.config.persona,
            question=text,
            passages=passages,
            history=[HistoryTurn(m.role, m.text) for m in history],
            count_tokens=backend.count_tokens,
            max_context_tokens=backend.max_context_tokens,
            max_reply_tokens=_reply_budget(self.config, backend),
        )
        completion: Completion | None = None
        streamed = False
        try:
            if streaming:
                guard = LeakGuard(secrets=(self.config.persona,))  # hidden instructions never stream out
                async for event in self.router.stream(prompt):
                    if isinstance(event, TextDelta) and event.text:
                        streamed = True
                        safe = guard.feed(event.text)
                        if safe:
                            yield ReplyDelta(safe)
                    elif isinstance(event, Done):
                        completion = event.completion
                rest = guard.finish()
                if rest:
                    yield ReplyDelta(rest)
            else:
                completion = await self.router.generate(prompt)
        except BackendError as exc:
            log.warning("every backend failed for conversation %s: %s", conversation.id, exc)
            reply = await self._record(conversation, user, FAILURE_TEXT, [], None, started, abstained=False)
            yield ReplyDone(reply)
            return
        assert completion is not None
        if completion.abstained:
            async for event in self._abstain(conversation, user, started, text=completion.text, backend=completion.backend, streamed=streamed):
                yield event
            return
        reply_text = completion.text.strip()
        if leaks_instructions(reply_text, secrets=(self.config.persona,)):
            reply_text, completion = LEAK_TEXT, Completion(text=LEAK_TEXT, usage=completion.usage, backend=completion.backend)
        citations = citations_for(completion, prompt.passages)
        if conversation.metadata.get("abstentions"):
            await self.store.update_metadata(conversation.id, {"abstentions": None})
        reply = await self._record(conversation, user, reply_text, citations, completion, started, abstained=False)
        if not streaming:
            yield ReplyDelta(reply.text)
        yield ReplyCitations(citations)
        yield ReplyDone(reply)

    async def _retrieve(self, query: str, *, message: str | None = None) -> list[Passage]:
        """``retriever.retrieve`` on :func:`retrieval_executor`, in this turn's context (its metrics record)."""
        return await self._start_retrieve(query, message=message)

    def _start_retrieve(self, query: str, *, message: str | None = None) -> asyncio.Future[list[Passage]]:
        """:meth:`_retrieve`, started now; the future of its passages."""
        call = functools.partial(
            contextvars.copy_context().run, self.retriever.retrieve, query, k=self.config.knowledge.top_k,
            message=message,
        )
        return asyncio.get_running_loop().run_in_executor(retrieval_executor(), call)

    async def _abstain(
        self, conversation: Conversation, user: Message, started: float, *,
        text: str | None = None, backend: str | None = None, streamed: bool = False,
    ) -> AsyncIterator[ReplyEvent]:
        count = int(conversation.metadata.get("abstentions") or 0) + 1
        await self.store.update_metadata(conversation.id, {"abstentions": count})
        decision = self.policy.after_abstention(count)
        if decision.escalate:
            reply = await self._hand_off(conversation, user, decision, started)
        else:
            reply = await self._record(conversation, user, text or ABSTAIN_TEXT, [], None, started, abstained=True, backend=backend)
        if not streamed:
            yield ReplyDelta(reply.text)
        yield ReplyDone(reply)

    async def _hand_off(self, conversation: Conversation, user: Message, decision: Decision, started: float) -> Reply:
        await self.store.update_metadata(
            conversation.id, {"handoff_reason": decision.reason, "handoff_at": time.time(), "abstentions": None}
        )
        await self.store.set_state(conversation.id, "handoff")
        reply = await self._record(conversation, user, handoff_message(self.config), [], None, started, abstained=False, handoff=True)
        log.info("conversation %s handed off: %s", conversation.id, decision.reason)
        return reply

    async def _record(
        self, conversation: Conversation, user: Message, text: str, citations: list[Citation],
        completion: Completion | None, started: float, *, abstained: bool, handoff: bool = False, backend: str | None = None,
    ) -> Reply:
        latency_ms = (time.perf_counter() - started) * 1000
        usage = completion.usage if completion else None
        message = await self.store.add_turn_reply(  # the turn's last write: may release its lock with it
            conversation.id, text, reply_to=user.id,
            citations=[c.to_dict() for c in citations],
            backend=completion.backend if completion else backend,
            latency_ms=int(latency_ms),
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            abstained=abstained,
        )
        metrics.turn_done(  # observability: metrics, the turn's log line, its trace
            conversation_id=conversation.id, message_id=message.id, reply_to=user.id, backend=message.backend,
            latency_ms=latency_ms, prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None, abstained=abstained, handoff=handoff,
            answered=completion is not None and not abstained and not handoff, citations=len(citations),
        )
        return Reply(
            conversation_id=conversation.id, text=text, citations=citations, backend=message.backend,
            handoff=handoff, abstained=abstained, message_id=message.id, reply_to=user.id, latency_ms=latency_ms,
            prompt_tokens=usage.prompt_tokens if usage else 0, completion_tokens=usage.completion_tokens if usage else 0,
        )

    def _reply_from_message(self, conversation: Conversation, message: Message, *, duplicate: bool) -> Reply:
        citations = [Citation(**{k: v for k, v in c.items() if k in Citation.__dataclass_fields__}) for c in message.citations]
        return Reply(
            conversation_id=conversation.id, text=message.text, citations=citations, backend=message.backend,
            handoff=conversation.state == "handoff", abstained=message.abstained, message_id=message.id,
            reply_to=message.reply_to, latency_ms=float(message.latency_ms or 0),
            prompt_tokens=message.prompt_tokens or 0, completion_tokens=message.completion_tokens or 0, duplicate=duplicate,
        )
