"""Exactly-once Slack events: claim before the ack, answer after it, recover after a crash.

Slack redelivers an event it did not see acknowledged within 3 seconds (``X-Slack-Retry-Num``),
and with several workers any of them may receive a redelivery. So:

1. **Claim** (before the ack, after the signature was verified): the event id and its
   payload are written to the store (``claim_event``). A redelivery, on any worker, finds
   the claim and is acknowledged and dropped. The claim is all the ack waits for: a Bolt
   global middleware (:attr:`EventDelivery.middleware`, after Bolt's signature check)
   claims each ``event_callback`` and acknowledges it, over HTTP and in Socket Mode.
   Claims arriving together are written together (:class:`ClaimBatcher`: one transaction
   for a burst), so 50 simultaneous events cost one database round trip, not 50 in a row.
2. **Ack, then answer**: a claimed event goes into an in-process queue that
   ``max_concurrent`` workers drain, so a burst of events does not start a burst of turns
   competing with the acks of the next events for the CPU, the event loop and the
   database. The claim ends ``done`` or ``failed``. An event that waited in the queue too
   long to finish before another worker may take it over is left to recovery (it is
   claimed, so it is not lost).
3. **Recover**: a worker that died after the ack leaves its claims ``pending``. At start-up
   and then every ``sweep_interval_s``, :meth:`EventDelivery.recover` takes over pending
   events older than ``grace_s`` (``pending_events`` renews the claim atomically, so two
   recovering workers never take the same one) and queues them again. The reply keeps
   the Slack message id as ``channel_message_id``, so a turn that was already stored is
   not generated twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime, timezone
from typing import Any

from slack_bolt.middleware.async_middleware import AsyncMiddleware
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

from botkit.bot import Bot
from botkit.errors import BotkitError, StoreError
from botkit.store.base import ConversationStore

log = logging.getLogger("botkit.slack")

CHANNEL = "slack"
DEFAULT_SWEEP_INTERVAL_S = 60.0
MAX_RECOVERY_AGE_S = 3600.0  # older unfinished events are marked failed, not answered an hour late
DEFAULT_MAX_CONCURRENT = 8  # answers generated at once per worker (slack.max_concurrent_answers)
START_MARGIN_S = 5.0  # an event starts this long before its turn deadline could pass grace_s (Slack calls)
CLAIM_CONNECTIONS = 2  # the claims' own connections on a database server (one batch is written at a time)
DEFAULT_MAX_QUEUED = 1000  # claimed events waiting in memory; beyond that they wait for recovery

Wants = Callable[[dict[str, Any], "str | None"], bool]
Process = Callable[[dict[str, Any], "str | None"], Awaitable[None]]


@dataclasses.dataclass(frozen=True)
class _Queued:
    body: dict[str, Any]
    bot_user_id: str | None
    claimed_at: float  # loop time of the claim (or of its renewal by recovery)


class EventDelivery:
    """Claims, queues, answers and recovers the Slack events a connector answers.

    ``wants(body, bot_user_id)`` says whether an ``event_callback`` is worth claiming
    (others are acknowledged and dropped without touching the store); ``process(body,
    bot_user_id)`` answers one (``bot_user_id`` is ``None`` for a recovered event).

    At most ``max_concurrent`` events are processed at once, by as many worker tasks
    draining a FIFO queue; at most ``max_queued`` wait in it (more are left ``pending``
    for recovery). An event must start within :attr:`max_wait_s` of its claim, so that
    it ends before ``grace_s``, when another worker may take it over; one that waited
    longer is left to recovery too. ``grace_s`` should exceed the turn deadline
    (``limits.turn_timeout_s``); the connector's default is that deadline + 30 s.
    """

    def __init__(
        self, bot: Bot, *, wants: Wants, process: Process, grace_s: float,
        sweep_interval_s: float = DEFAULT_SWEEP_INTERVAL_S, max_age_s: float = MAX_RECOVERY_AGE_S,
        max_concurrent: int = DEFAULT_MAX_CONCURRENT, max_queued: int = DEFAULT_MAX_QUEUED,
    ) -> None:
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be at least 1, got {max_concurrent!r}")
        self.bot = bot
        self.grace_s = grace_s
        self.sweep_interval_s = sweep_interval_s
        self.max_age_s = max_age_s
        self.max_concurrent = max_concurrent
        self._wants = wants
        self._process = process
        self._queue: asyncio.Queue[_Queued] = asyncio.Queue(maxsize=max_queued)
        self._held: set[str] = set()  # event ids queued or being processed here
        self._tasks: set[asyncio.Task[Any]] = set()  # answers and clicks in progress
        self._workers: list[asyncio.Task[None]] = []
        self._sweeper: asyncio.Task[None] | None = None
        self._closing = False
        self._claims: ConversationStore | None = None  # see _claim_store()
        self._own_claims: ConversationStore | None = None
        self._claims_opening = asyncio.Lock()
        self._batcher = ClaimBatcher(self._claim_store)
        self.middleware: AsyncMiddleware = _ClaimMiddleware(self)

    @property
    def max_wait_s(self) -> float:
        """How long after its claim an event may still start: ``grace_s`` less the turn
        deadline and :data:`START_MARGIN_S` (no limit when ``grace_s`` is shorter than that)."""
        budget = self.grace_s - self.bot.config.limits.turn_timeout_s - START_MARGIN_S
        return budget if budget > 0 else float("inf")

    @property
    def backlog(self) -> int:
        """Events claimed by this worker and not finished yet (queued or being answered)."""
        return len(self._held)

    async def admit(self, body: dict[str, Any], bot_user_id: str | None, *, retry: str | None = None) -> int:
        """Claim a verified ``event_callback`` and queue it; the status to acknowledge it with.

        200: claimed and queued, a redelivery of a claimed event, or an event the bot does
        not answer. 503: the claim could not be written; Slack retries, and the retry claims it.
        """
        event_id = body.get("event_id")
        if not isinstance(event_id, str) or not self._wants(body, bot_user_id):
            return 200  # nothing to answer: ack and drop
        try:
            claimed = await self._batcher.claim(event_id, body)
        except StoreError as exc:
            log.warning("slack event %s not claimed (%s): answering 503 so that Slack retries", event_id, exc)
            return 503
        if not claimed:
            log.info("slack event %s delivered again (retry %s): dropped", event_id, retry)
            return 200
        self.submit(body, bot_user_id)
        return 200

    def submit(self, body: dict[str, Any], bot_user_id: str | None) -> bool:
        """Queue a claimed event for a worker; ``False`` when it is left to recovery
        (queue full, or shutting down): its claim stays ``pending``."""
        event_id = str(body["event_id"])
        if event_id in self._held:
            return True
        if self._closing:
            return False
        self._start_workers()
        try:
            self._queue.put_nowait(_Queued(body, bot_user_id, asyncio.get_running_loop().time()))
        except asyncio.QueueFull:
            log.warning("slack event %s: %d events already queued; it is answered by recovery (claimed, pending)",
                        event_id, self._queue.qsize())
            return False
        self._held.add(event_id)
        return True

    async def run(self, body: dict[str, Any], bot_user_id: str | None) -> None:
        """Process a claimed event now and record how it ended (``done`` / ``failed``).

        Cancelled (worker shutting down): the claim stays ``pending`` for recovery.
        """
        event_id = str(body["event_id"])
        status = "failed"
        try:
            await self._process(body, bot_user_id)
            status = "done"
        except asyncio.CancelledError:
            raise
        except Exception:  # a background task: record the failure, never lose it silently
            log.exception("slack event %s failed", event_id)
        await self._set_status(event_id, status)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` in a task that :meth:`aclose` waits for."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def recover(self) -> int:
        """Take over and queue events whose worker died; return how many were queued."""
        await self.bot.start()
        events = await self.bot.store.pending_events(channel=CHANNEL, older_than_s=self.grace_s)
        started = 0
        for event in events:
            if event.event_id in self._held:
                continue  # still queued or being answered here (its claim was just renewed)
            age = (datetime.now(timezone.utc) - event.created_at).total_seconds() if event.created_at else 0.0
            if not event.payload or age > self.max_age_s:
                log.warning("slack event %s left unfinished %.0f s ago: not answered", event.event_id, age)
                await self._set_status(event.event_id, "failed")
                continue
            log.info("slack event %s left unfinished by a worker: processing it again", event.event_id)
            if self.submit(dict(event.payload), None):
                started += 1
        return started

    async def start(self) -> None:
        """Start the workers and the recovery sweep (now, then every ``sweep_interval_s``)."""
        self._closing = False
        try:
            await self._claim_store()
        except StoreError as exc:  # the first event tries again (answered 503 until then)
            log.warning("slack: cannot open the store for event claims yet: %s", exc)
        self._start_workers()
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep(), name="botkit-slack-recovery")

    async def aclose(self, timeout: float = 10.0) -> None:
        """Stop the sweep and the workers; wait up to ``timeout`` s for answers in progress,
        then cancel them. Their claims, and those of queued events, stay ``pending``: the
        next start-up (or another worker) answers them."""
        self._closing = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None
        while not self._queue.empty():  # not started: left to recovery
            self._held.discard(str(self._queue.get_nowait().body["event_id"]))
        busy = {task for task in self._tasks if task is not asyncio.current_task()}
        if busy:
            _, late = await asyncio.wait(busy, timeout=timeout)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        workers, self._workers = self._workers, []
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        own, self._own_claims, self._claims = self._own_claims, None, None
        if own is not None:
            await own.close()

    async def idle(self, timeout: float) -> bool:
        """Wait until no event is queued or being processed (tests, benchmarks); ``False`` on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (self._held or self._tasks) and loop.time() < deadline:
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=min(0.05, max(0.0, deadline - loop.time())))
            else:
                await asyncio.sleep(0.01)
        return not (self._held or self._tasks)

    async def _claim_store(self) -> ConversationStore:
        """Where claims are written: when the bot's store is the SQL store of its
        ``database_url``, a second one on the same database with a pool of its own
        (:data:`CLAIM_CONNECTIONS` connections on a database server),
        so that an ack never waits for a connection or a thread behind the answers'
        database work; otherwise the bot's store."""
        async with self._claims_opening:
            if self._claims is not None:
                return self._claims
            await self.bot.start()
            store = self.bot.store
            from botkit.store import SQLConversationStore
            from botkit.store.urls import normalize_database_url

            url = self.bot.config.resolved_database_url
            if isinstance(store, SQLConversationStore) and store.url == normalize_database_url(url):
                own = SQLConversationStore(url, migrate=False, max_connections=CLAIM_CONNECTIONS)
                await own.open()  # the bot's store already migrated the schema
                self._own_claims = store = own
            self._claims = store
            return store

    def _start_workers(self) -> None:
        self._workers = [worker for worker in self._workers if not worker.done()]
        for number in range(len(self._workers), self.max_concurrent):
            self._workers.append(asyncio.create_task(self._work(), name=f"botkit-slack-answers-{number}"))

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            item = await self._queue.get()
            event_id = str(item.body["event_id"])
            waited = loop.time() - item.claimed_at
            if waited > self.max_wait_s:
                log.warning("slack event %s waited %.0f s for a worker: left to recovery (another worker may "
                            "take it over; raise slack.max_concurrent_answers or add workers)", event_id, waited)
                self._held.discard(event_id)
                continue
            task = asyncio.create_task(self.run(item.body, item.bot_user_id), name=f"botkit-slack-{event_id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            task.add_done_callback(lambda _, event_id=event_id: self._held.discard(event_id))
            try:
                await asyncio.shield(task)  # a stopped worker leaves the answer to aclose()
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():  # this worker is being stopped
                    raise

    async def _sweep(self) -> None:
        while True:
            try:
                await self.recover()
            except BotkitError as exc:
                log.warning("slack recovery sweep failed (retrying in %.0f s): %s", self.sweep_interval_s, exc)
            await asyncio.sleep(self.sweep_interval_s)

    async def _set_status(self, event_id: str, status: str) -> None:
        try:
            await self.bot.store.set_event_status(channel=CHANNEL, event_id=event_id, status=status)
        except StoreError as exc:  # the claim stays pending: recovery will look at it again
            log.warning("slack event %s: could not record status %s: %s", event_id, status, exc)


class ClaimBatcher:
    """Group commit for event claims: claims made while a batch is being written wait and
    go together in the next one (one transaction, ``ConversationStore.claim_events``).

    An idle batcher writes a claim at once; under a burst, each ack waits for at most the
    batch in flight and its own. ``store`` gives the store to write to (opened lazily).
    """

    def __init__(self, store: Callable[[], Awaitable[ConversationStore]], *, max_batch: int = 200) -> None:
        self._store = store
        self._max_batch = max_batch
        self._waiting: list[tuple[str, dict[str, Any], asyncio.Future[bool]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def claim(self, event_id: str, payload: dict[str, Any]) -> bool:
        """Claim one event; ``True`` when this call claimed it (``False``: claimed before)."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((event_id, payload, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name="botkit-slack-claims")
        return await asyncio.shield(future)  # a cancelled ack must not cancel the others' batch

    async def _write(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[: self._max_batch], self._waiting[self._max_batch :]
            try:
                store = await self._store()
                claimed = await store.claim_events(channel=CHANNEL, events=[(e, p) for e, p, _ in batch])
            except BaseException as exc:  # every waiter of the batch gets the error (503: Slack retries)
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                if isinstance(exc, Exception):
                    continue
                for _, _, future in self._waiting:  # cancelled (shutting down): nobody writes the rest
                    if not future.done():
                        future.set_exception(exc)
                self._waiting = []
                raise
            for (_, _, future), won in zip(batch, claimed, strict=True):
                if not future.done():
                    future.set_result(won)


class _ClaimMiddleware(AsyncMiddleware):
    """Bolt global middleware: claims an ``event_callback`` after Bolt's own middleware
    (signature, self events) and acknowledges it; listeners never see events."""

    def __init__(self, delivery: EventDelivery) -> None:
        self._delivery = delivery

    async def async_process(
        self, *, req: AsyncBoltRequest, resp: BoltResponse, next: Callable[[], Awaitable[BoltResponse]]
    ) -> BoltResponse:
        if req.body.get("type") != "event_callback":
            return await next()
        retries = req.headers.get("x-slack-retry-num") or []
        retry = retries[0] if retries else req.body.get("retry_attempt")  # HTTP header, or Socket Mode envelope
        status = await self._delivery.admit(req.body, req.context.bot_user_id, retry=retry)
        return BoltResponse(status=status, body="")
