"""Exactly-once Slack events: claim before the ack, process after it, recover after a crash.

Slack redelivers an event it did not see acknowledged within 3 seconds (``X-Slack-Retry-Num``),
and with several workers any of them may receive a redelivery. So:

1. **Claim** (a Bolt middleware, after Bolt verified the signature): the event id and its
   payload are written to the store (``claim_event``) *before* the ack. A redelivery, on
   any worker, finds the claim and is acknowledged and dropped.
2. **Ack, then process**: Bolt acknowledges the event at once (``process_before_response``
   off) and the listener answers it afterwards, in a task this class tracks; the claim
   ends ``done`` or ``failed``.
3. **Recover**: a worker that died after the ack leaves its claim ``pending``. At start-up
   and then every ``sweep_interval_s``, :meth:`EventDelivery.recover` takes over pending
   events older than ``grace_s`` (``pending_events`` renews the claim atomically, so two
   recovering workers never take the same one) and processes them again. The reply
   keeps the Slack message id as ``channel_message_id``, so a turn that was already
   stored is not generated twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime, timezone
from typing import Any

from slack_bolt.middleware.async_middleware import AsyncMiddleware
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

from botkit.bot import Bot
from botkit.errors import BotkitError, StoreError

log = logging.getLogger("botkit.slack")

CHANNEL = "slack"
DEFAULT_SWEEP_INTERVAL_S = 60.0
MAX_RECOVERY_AGE_S = 3600.0  # older unfinished events are marked failed, not answered an hour late
DEFAULT_MAX_CONCURRENT = 16  # turns at once per worker: the acks of new events stay fast under load

Wants = Callable[[dict[str, Any], "str | None"], bool]
Process = Callable[[dict[str, Any], "str | None"], Awaitable[None]]


class EventDelivery:
    """Claims, runs and recovers the Slack events a connector answers.

    ``wants(body, bot_user_id)`` says whether an ``event_callback`` is worth claiming
    (others are acknowledged and dropped without touching the store); ``process(body,
    bot_user_id)`` answers one (``bot_user_id`` is ``None`` for a recovered event).
    At most ``max_concurrent`` events are processed at once; the others wait for a
    slot (claimed, so still exactly once). The bound keeps the database and the event
    loop free to acknowledge new events within Slack's 3 seconds while answers are
    generated. ``grace_s`` must exceed the longest wait plus turn
    (``limits.turn_timeout_s``), or a busy worker's event could be taken over while it
    still runs.
    """

    def __init__(
        self, bot: Bot, *, wants: Wants, process: Process, grace_s: float,
        sweep_interval_s: float = DEFAULT_SWEEP_INTERVAL_S, max_age_s: float = MAX_RECOVERY_AGE_S,
        max_concurrent: int = DEFAULT_MAX_CONCURRENT,
    ) -> None:
        self.bot = bot
        self.grace_s = grace_s
        self.sweep_interval_s = sweep_interval_s
        self.max_age_s = max_age_s
        self._wants = wants
        self._process = process
        self._tasks: set[asyncio.Task[Any]] = set()
        self._slots = asyncio.Semaphore(max_concurrent)
        self._sweeper: asyncio.Task[None] | None = None
        self.middleware: AsyncMiddleware = _ClaimMiddleware(self)

    async def admit(self, req: AsyncBoltRequest, next: Callable[[], Awaitable[BoltResponse]]) -> BoltResponse:
        """Claim a verified ``event_callback`` before it is acknowledged (the middleware's work)."""
        body = req.body
        event_id = body.get("event_id")
        if not isinstance(event_id, str) or not self._wants(body, req.context.bot_user_id):
            return BoltResponse(status=200, body="")  # nothing to answer: ack and drop
        try:
            await self.bot.start()
            claimed = await self.bot.store.claim_event(channel=CHANNEL, event_id=event_id, payload=body)
        except StoreError as exc:  # no ack: Slack retries later, and the retry claims it
            log.warning("slack event %s not claimed (%s): answering 503 so that Slack retries", event_id, exc)
            return BoltResponse(status=503, body="")
        if not claimed:
            retries = req.headers.get("x-slack-retry-num") or []
            retry = retries[0] if retries else body.get("retry_attempt")  # HTTP header, or Socket Mode envelope
            log.info("slack event %s delivered again (retry %s): dropped", event_id, retry)
            return BoltResponse(status=200, body="")
        return await next()

    async def run(self, body: dict[str, Any], bot_user_id: str | None) -> None:
        """Process a claimed event and record how it ended (``done`` / ``failed``).

        Cancelled (worker shutting down): the claim stays ``pending`` for recovery.
        """
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        event_id = str(body["event_id"])
        status = "failed"
        try:
            async with self._slots:
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
        """Take over and re-process events whose worker died; return how many were restarted."""
        await self.bot.start()
        events = await self.bot.store.pending_events(channel=CHANNEL, older_than_s=self.grace_s)
        started = 0
        for event in events:
            age = (datetime.now(timezone.utc) - event.created_at).total_seconds() if event.created_at else 0.0
            if not event.payload or age > self.max_age_s:
                log.warning("slack event %s left unfinished %.0f s ago: not answered", event.event_id, age)
                await self._set_status(event.event_id, "failed")
                continue
            log.info("slack event %s left unfinished by a worker: processing it again", event.event_id)
            self.spawn(self.run(event.payload, None))
            started += 1
        return started

    async def start(self) -> None:
        """Start the recovery sweep (now, then every ``sweep_interval_s``)."""
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep(), name="botkit-slack-recovery")

    async def aclose(self, timeout: float = 10.0) -> None:
        """Stop the sweep; wait up to ``timeout`` s for events in progress, then cancel them
        (their claims stay ``pending``: the next start-up finishes them)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None
        pending = {task for task in self._tasks if task is not asyncio.current_task()}
        if pending:
            _, late = await asyncio.wait(pending, timeout=timeout)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    async def idle(self, timeout: float) -> bool:
        """Wait until no event is being processed (tests, benchmarks); ``False`` on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._tasks and loop.time() < deadline:
            await asyncio.wait(set(self._tasks), timeout=max(0.0, deadline - loop.time()))
        return not self._tasks

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


class _ClaimMiddleware(AsyncMiddleware):
    """Bolt global middleware: runs after Bolt's own (signature, URL verification, self events)."""

    def __init__(self, delivery: EventDelivery) -> None:
        self._delivery = delivery

    async def async_process(
        self, *, req: AsyncBoltRequest, resp: BoltResponse, next: Callable[[], Awaitable[BoltResponse]]
    ) -> BoltResponse:
        if req.body.get("type") != "event_callback":
            return await next()
        return await self._delivery.admit(req, next)
