"""Delivery of the webhook outbox: signed POSTs with retries and exponential backoff.

Each request carries::

    X-Botkit-Timestamp: <unix seconds>
    X-Botkit-Signature: v1=<hex HMAC-SHA256 of "<timestamp>.<body>" under the endpoint's secret>
    X-Botkit-Event: <event type>
    X-Botkit-Delivery: <event id>     (the same on every retry: receivers drop repeats with it)

A 2xx answer marks the delivery done; anything else (or no answer within
``webhooks.timeout_s``) schedules a retry ``backoff_s * 2**(attempts-1)`` seconds later (at
most ``max_backoff_s``), until ``max_attempts`` are spent. Delivery is at least once: a
worker that dies between the receiver's 2xx and recording it sends that event again.
Several workers (processes) can run at once: each takes a due row with a conditional
``UPDATE`` (a lease), so one row is sent by one worker at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
from sqlalchemy import select, update

from botkit._tables import reading, webhook_deliveries, webhook_endpoints, writing
from botkit.config import WebhookSettings
from botkit.webhooks import Delivery, Webhooks, to_delivery

log = logging.getLogger("botkit.webhooks")
SIGNATURE_HEADER = "X-Botkit-Signature"
TIMESTAMP_HEADER = "X-Botkit-Timestamp"
LEASE_MARGIN_S = 30.0
_D = webhook_deliveries.c


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """The ``X-Botkit-Signature`` value for ``body`` sent at ``timestamp``."""
    message = f"{timestamp}.".encode() + body
    return "v1=" + hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def verify_signature(
    secret: str, *, timestamp: str | None, body: bytes, signature: str | None, tolerance_s: float = 300.0,
    now: float | None = None,
) -> bool:
    """What a receiver checks: the signature matches and the timestamp is recent."""
    if not timestamp or not signature or not timestamp.isdigit():
        return False
    if abs((now or time.time()) - int(timestamp)) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def backoff(settings: WebhookSettings, attempts: int) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt."""
    return float(min(settings.max_backoff_s, settings.backoff_s * 2 ** max(0, attempts - 1)))


class DeliveryWorker:
    """Sends due outbox rows. ``await run_once()`` is one pass; :meth:`start` runs passes
    in a task until :meth:`aclose` (what ``botkit serve`` does)."""

    def __init__(
        self, webhooks: Webhooks, settings: WebhookSettings, *, client: httpx.AsyncClient | None = None
    ) -> None:
        self.webhooks = webhooks
        self.settings = settings
        self._client = client
        self._owns_client = client is None
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    @property
    def client(self) -> httpx.AsyncClient:
        """The HTTP client (made on first use: no redirects followed, no proxies from the environment)."""
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.settings.timeout_s, follow_redirects=False,
                                             trust_env=False, headers={"User-Agent": "botkit-webhooks/1"})
        return self._client

    async def _due(self, now: datetime, limit: int) -> list[Delivery]:
        query = (select(webhook_deliveries)
                 .where(_D.delivered_at.is_(None), _D.failed_at.is_(None), _D.next_attempt_at <= now)
                 .order_by(_D.next_attempt_at, _D.id).limit(limit))
        async with reading(self.webhooks.engine, "find due webhook deliveries") as conn:
            return [to_delivery(row) for row in (await conn.execute(query)).all()]

    async def _take(self, delivery: Delivery, now: datetime) -> bool:
        lease = now + timedelta(seconds=self.settings.timeout_s + LEASE_MARGIN_S)
        statement = (update(webhook_deliveries)
                     .where(_D.id == delivery.id, _D.delivered_at.is_(None), _D.failed_at.is_(None),
                            _D.next_attempt_at <= now)
                     .values(next_attempt_at=lease))
        async with writing(self.webhooks.engine, "take a webhook delivery") as conn:
            return bool((await conn.execute(statement)).rowcount)

    async def run_once(self, *, now: datetime | None = None, limit: int = 50) -> int:
        """Attempt every due delivery once (up to ``limit``); return how many were attempted."""
        now = now or datetime.now(timezone.utc)
        attempted = 0
        for delivery in await self._due(now, limit):
            if not await self._take(delivery, now):
                continue  # another worker took it
            attempted += 1
            await self._attempt(delivery, now)
        return attempted

    async def _attempt(self, delivery: Delivery, now: datetime) -> None:
        target = await self._endpoint(delivery.endpoint_id)
        if target is None:
            return  # the endpoint was removed or disabled meanwhile
        url, secret = target
        body = json.dumps(delivery.payload, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8")
        timestamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: timestamp,
                   SIGNATURE_HEADER: sign(secret, timestamp, body), "X-Botkit-Event": delivery.event_type,
                   "X-Botkit-Delivery": delivery.event_id}
        status: int | None = None
        error: str | None = None
        try:
            response = await self.client.post(url, content=body, headers=headers, timeout=self.settings.timeout_s)
            status = response.status_code
            if not 200 <= status < 300:
                error = f"HTTP {status}: {response.text[:200]}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500] or type(exc).__name__
        await self._record(delivery, status, error)

    async def _endpoint(self, endpoint_id: str) -> tuple[str, str] | None:
        e = webhook_endpoints.c
        query = select(e.url, e.secret).where(e.id == endpoint_id, e.disabled_at.is_(None))
        async with reading(self.webhooks.engine, "read a webhook endpoint") as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else (str(row.url), str(row.secret))

    async def _record(self, delivery: Delivery, status: int | None, error: str | None) -> None:
        at = datetime.now(timezone.utc)
        attempts = delivery.attempts + 1
        values: dict[str, Any] = {"attempts": attempts, "last_status": status, "last_error": error}
        if error is None:
            values["delivered_at"] = at
        elif attempts >= self.settings.max_attempts:
            values["failed_at"] = at
            log.warning("webhook %s to %s given up after %d attempts: %s", delivery.event_id, delivery.endpoint_id,
                        attempts, error)
        else:
            values["next_attempt_at"] = at + timedelta(seconds=backoff(self.settings, attempts))
            log.info("webhook %s to %s failed (attempt %d): %s", delivery.event_id, delivery.endpoint_id, attempts, error)
        async with writing(self.webhooks.engine, "record a webhook delivery") as conn:
            await conn.execute(update(webhook_deliveries).where(_D.id == delivery.id).values(values))

    async def retry(self, delivery_id: int) -> bool:
        """Make a failed or pending delivery due now (the console's "retry" button)."""
        statement = (update(webhook_deliveries).where(_D.id == delivery_id, _D.delivered_at.is_(None))
                     .values(failed_at=None, next_attempt_at=datetime.now(timezone.utc)))
        async with writing(self.webhooks.engine, "retry a webhook delivery") as conn:
            done = bool((await conn.execute(statement)).rowcount)
        if done and self.webhooks.wakeup is not None:
            self.webhooks.wakeup.set()
        return done

    async def _loop(self) -> None:
        wakeup = self.webhooks.wakeup = asyncio.Event()
        while not self._stop.is_set():
            wakeup.clear()
            try:
                await self.run_once()
            except Exception:  # a background loop logs and keeps going (database restarts, bugs in one row)
                log.exception("webhook delivery pass failed; retrying in %.0fs", self.settings.poll_interval_s)
            with contextlib.suppress(asyncio.TimeoutError):
                stop = asyncio.ensure_future(self._stop.wait())
                woken = asyncio.ensure_future(wakeup.wait())
                try:
                    await asyncio.wait({stop, woken}, timeout=self.settings.poll_interval_s,
                                       return_when=asyncio.FIRST_COMPLETED)
                finally:
                    stop.cancel()
                    woken.cancel()

    def start(self) -> None:
        """Run delivery passes in a background task of the running loop."""
        if self._task is None:
            self._stop.clear()
            self._task = asyncio.create_task(self._loop(), name="botkit-webhooks")

    async def aclose(self) -> None:
        """Stop the background task (a delivery in flight finishes) and close the client."""
        task, self._task = self._task, None
        if task is not None:
            self._stop.set()
            try:
                await asyncio.wait_for(task, timeout=self.settings.timeout_s + 5)
            except asyncio.TimeoutError:
                task.cancel()
        if self.webhooks.wakeup is not None:
            self.webhooks.wakeup = None
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None


__all__ = ["DeliveryWorker", "backoff", "sign", "verify_signature"]
