"""The front door: :class:`Bot` ties a bot directory's config, store, knowledge and backends together.

>>> from botkit import Bot
>>> bot = Bot.from_dir("examples/faq-agent")
>>> async with bot:
...     reply = await bot.reply("conv-1", "How do I reset my password?")
...     print(reply.text, [c.source for c in reply.citations])

Scripts without an event loop use the ``*_sync`` wrappers (``bot.reply_sync(...)``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from botkit.backends.base import Backend
from botkit.config import BotConfig, load_config
from botkit.dialogue import DialogueManager
from botkit.errors import ConfigError, RetrievalError
from botkit.messages import IncomingMessage, Reply, ReplyDone, ReplyEvent
from botkit.policy import EscalationPolicy
from botkit.router import Router
from botkit.store.base import (
    Conversation,
    ConversationState,
    ConversationStore,
    Message,
)
from botkit.webhooks import Observer, feedback_event, notify, turn_events

T = TypeVar("T")


class Bot:
    """A customer-service bot: ``await bot.reply(conversation_id, text)``.

    Construction does no I/O; :meth:`start` (or ``async with bot``) opens the conversation
    store (applying migrations), the knowledge base and the backends.
    """

    def __init__(
        self,
        config: BotConfig,
        *,
        backends: Sequence[Backend] | None = None,
        store: ConversationStore | None = None,
        knowledge: Any | None = None,
    ) -> None:
        self.config = config
        self._backends = list(backends) if backends is not None else None
        self._store = store
        self._knowledge = knowledge
        self._manager: DialogueManager | None = None
        self._router: Router | None = None
        self._start_lock = asyncio.Lock()
        self._loop_thread: _LoopThread | None = None
        self.observers: list[Observer] = []
        """Async callables told of each turn's messages, handoffs and feedback (:mod:`botkit.webhooks`)."""

    @classmethod
    def from_dir(
        cls,
        path: str | Path = ".",
        *,
        environ: Mapping[str, str] | None = None,
        backends: Sequence[Backend] | None = None,
    ) -> Bot:
        """Load ``path/bot.yaml`` (with ``BOTKIT_*`` environment overrides)."""
        return cls(load_config(path, environ), backends=backends)

    @property
    def name(self) -> str:
        """The bot's name (``name`` in bot.yaml)."""
        return self.config.name

    @property
    def store(self) -> ConversationStore:
        """The conversation store (open after :meth:`start`)."""
        if self._store is None:
            from botkit.store import SQLConversationStore

            self._store = SQLConversationStore.from_config(self.config)
        return self._store

    @property
    def knowledge(self) -> Any:
        """The knowledge base (``knowledge.index.KnowledgeBase``)."""
        if self._knowledge is None:
            from knowledge.index import KnowledgeBase

            self._knowledge = KnowledgeBase.open(
                self.config.knowledge, root=self.config.root, data_dir=self.config.data_path,
                chroma_path=self.config.chroma_path,
            )
        return self._knowledge

    @property
    def router(self) -> Router:
        """The backend fallback chain."""
        if self._router is None:
            backends = self._backends
            if backends:
                self._router = Router(backends, turn_timeout=self.config.limits.turn_timeout_s)
            else:
                self._router = Router.from_config(self.config)
        return self._router

    async def start(self) -> None:
        """Open the store, the knowledge base and the backends. Idempotent."""
        async with self._start_lock:
            if self._manager is not None:
                return
            router = self.router  # config errors surface before any I/O
            await self.store.open()
            knowledge = await asyncio.to_thread(lambda: self.knowledge)
            classifier = await asyncio.to_thread(_load_classifier, self.config)
            manager = DialogueManager(
                config=self.config, store=self.store, retriever=knowledge.retriever, router=router,
                policy=EscalationPolicy(self.config.escalation, classifier=classifier),
            )
            await asyncio.to_thread(knowledge.embedder.embed, ["warm-up"])  # load the model before the first turn
            self._manager = manager

    async def aclose(self) -> None:
        """Release connections and backends."""
        if self._router is not None:
            await self._router.aclose()
        if self._store is not None:
            await self._store.close()
        if self._knowledge is not None:
            self._knowledge.close()
            self._knowledge = None
        self._manager = None

    async def __aenter__(self) -> Bot:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _dm(self) -> DialogueManager:
        if self._manager is None:
            await self.start()
        assert self._manager is not None
        return self._manager

    # -- turns -----------------------------------------------------------------------

    async def handle(self, incoming: IncomingMessage) -> Reply:
        """Run one turn for a connector's message."""
        reply = await (await self._dm()).handle(incoming)
        if self.observers:  # none: skip building the turn's events
            await notify(self.observers, turn_events(self.name, incoming, reply))
        return reply

    async def handle_stream(self, incoming: IncomingMessage) -> AsyncIterator[ReplyEvent]:
        """Run one turn, streaming :data:`~botkit.messages.ReplyEvent`s."""
        manager = await self._dm()
        async for event in manager.handle_stream(incoming):
            if isinstance(event, ReplyDone) and self.observers:
                await notify(self.observers, turn_events(self.name, incoming, event.reply))
            yield event

    async def reply(
        self, conversation_id: str | None, text: str, *, channel: str = "api",
        channel_message_id: str | None = None, metadata: Mapping[str, Any] | None = None,
    ) -> Reply:
        """Answer ``text`` in a conversation; an id not seen before starts one."""
        return await self.handle(_incoming(conversation_id, text, channel, channel_message_id, metadata))

    def stream(
        self, conversation_id: str | None, text: str, *, channel: str = "api",
        channel_message_id: str | None = None, metadata: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[ReplyEvent]:
        """Like :meth:`reply`, streaming text deltas, citations and the final reply."""
        return self.handle_stream(_incoming(conversation_id, text, channel, channel_message_id, metadata))

    # -- conversations ------------------------------------------------------------------

    async def new_conversation(
        self, *, channel: str = "api", external_id: str | None = None, metadata: Mapping[str, Any] | None = None
    ) -> str:
        """Start a conversation and return its id."""
        await self._dm()
        conversation = await self.store.create_conversation(
            bot=self.name, channel=channel, external_id=external_id, metadata=metadata
        )
        return conversation.id

    async def conversation(self, conversation_id: str) -> Conversation | None:
        """The conversation, or ``None``."""
        await self._dm()
        return await self.store.get_conversation(conversation_id)

    async def history(self, conversation_id: str, *, limit: int = 50) -> list[Message]:
        """The last ``limit`` messages of a conversation, oldest first."""
        await self._dm()
        return await self.store.history(conversation_id, limit=limit)

    async def set_state(self, conversation_id: str, state: ConversationState) -> Conversation:
        """Move a conversation to ``bot``, ``handoff`` or ``closed``."""
        await self._dm()
        return await self.store.set_state(conversation_id, state)

    async def feedback(
        self, conversation_id: str, *, rating: int, message_id: int | None = None, comment: str | None = None
    ) -> None:
        """Record thumbs up (+1) or down (-1) on a conversation or one of its replies."""
        await self._dm()
        recorded = await self.store.add_feedback(conversation_id, rating, message_id=message_id, comment=comment)
        await notify(self.observers, [feedback_event(self.name, recorded)])

    async def list_conversations(
        self, *, state: ConversationState | None = None, limit: int = 50, offset: int = 0
    ) -> list[Conversation]:
        """This bot's conversations, most recently active first."""
        await self._dm()
        return await self.store.list_conversations(bot=self.name, state=state, limit=limit, offset=offset)

    # -- knowledge -----------------------------------------------------------------------

    async def ready(self) -> dict[str, bool]:
        """Whether the store and the index answer (for readiness probes)."""
        result = {"store": False, "knowledge": False}
        try:
            await self._dm()
            await self.store.count_messages("readiness-probe")
            result["store"] = True
        except Exception:  # noqa: BLE001 - a probe reports, it does not raise
            pass
        try:
            await asyncio.to_thread(self.knowledge.stats)
            result["knowledge"] = True
        except Exception:  # noqa: BLE001
            pass
        return result

    async def ingest(self, *, rebuild: bool = False) -> Any:
        """Sync the knowledge base with its sources; returns the ingest report."""
        try:
            return await asyncio.to_thread(self.knowledge.ingest, rebuild=rebuild)
        except Exception as exc:
            from knowledge.errors import KnowledgeError

            if isinstance(exc, KnowledgeError):
                raise RetrievalError(f"ingestion failed: {exc}") from exc
            raise

    async def ingest_if_needed(self) -> Any | None:
        """Ingest when the index is empty or older than its sources; else ``None``."""
        kb = self.knowledge
        if await asyncio.to_thread(kb.is_empty) or await asyncio.to_thread(kb.is_stale):
            return await self.ingest()
        return None

    # -- sync wrappers for scripts ----------------------------------------------------------

    def reply_sync(self, conversation_id: str | None, text: str, **kwargs: Any) -> Reply:
        """:meth:`reply` for code without an event loop."""
        return self._run(self.reply(conversation_id, text, **kwargs))

    def history_sync(self, conversation_id: str, *, limit: int = 50) -> list[Message]:
        """:meth:`history` for code without an event loop."""
        return self._run(self.history(conversation_id, limit=limit))

    def close_sync(self) -> None:
        """Close the bot and its private event loop (after ``*_sync`` calls)."""
        if self._loop_thread is not None:
            self._loop_thread.run(self.aclose())
            self._loop_thread.stop()
            self._loop_thread = None

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop_thread is None:
            self._loop_thread = _LoopThread()
        return self._loop_thread.run(coro)


def _incoming(
    conversation_id: str | None, text: str, channel: str, channel_message_id: str | None, metadata: Mapping[str, Any] | None
) -> IncomingMessage:
    return IncomingMessage(
        text=text, conversation_id=conversation_id, channel=channel,
        channel_message_id=channel_message_id, metadata=dict(metadata or {}),
    )


def _load_classifier(config: BotConfig) -> object | None:
    path = config.escalation.classifier
    if not path:
        return None
    try:
        from botkit.classifier import EscalationClassifier
    except ImportError as exc:  # pragma: no cover - shipped with botkit
        raise ConfigError("escalation.classifier is set but the classifier module is missing") from exc
    folder = Path(path).expanduser()
    return EscalationClassifier.load(folder if folder.is_absolute() else config.root / folder)


class _LoopThread:
    """A private event loop in a daemon thread, so sync wrappers keep one loop for the bot."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="botkit-sync", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
