"""Signed webhooks from the durable outbox, delivered to a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from botkit.backends.scripted import ScriptedBackend
from botkit.bot import Bot
from botkit.config import WebhookSettings
from botkit.store import create_engine
from botkit.store.migrate import ensure_schema
from botkit.webhooks import BotEvent, Webhooks
from botkit.webhooks_delivery import DeliveryWorker, backoff, sign, verify_signature

FAST = WebhookSettings(timeout_s=5, backoff_s=60, max_attempts=3, poll_interval_s=0.1)


class Receiver:
    """A local HTTP endpoint that records requests and answers with scripted statuses."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.requests.append({"headers": dict(self.headers), "body": body, "path": self.path})
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.close()


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'botkit.db'}"


async def _hooks(url: str) -> Webhooks:
    hooks = Webhooks.from_url(url)
    await ensure_schema(hooks.engine)
    return hooks


def _event(kind: str = "conversation.handoff") -> BotEvent:
    return BotEvent(kind, "acme", "conv-" + uuid.uuid4().hex[:6], {"question": "Where is my refund?"})


def test_signatures() -> None:
    body, secret, now = b'{"a":1}', "whsec_test", 1_700_000_000
    signature = sign(secret, now, body)
    assert signature.startswith("v1=") and len(signature) == 67
    assert verify_signature(secret, timestamp=str(now), body=body, signature=signature, now=now + 10)
    assert not verify_signature(secret, timestamp=str(now), body=body + b" ", signature=signature, now=now)
    assert not verify_signature("whsec_other", timestamp=str(now), body=body, signature=signature, now=now)
    assert not verify_signature(secret, timestamp=str(now), body=body, signature=signature, now=now + 3600)  # replay
    assert [backoff(FAST, n) for n in (1, 2, 3)] == [60, 120, 240]
    assert backoff(WebhookSettings(backoff_s=5, max_backoff_s=30), 10) == 30


async def test_delivered_signed_once(receiver: Receiver, db_url: str) -> None:
    hooks = await _hooks(db_url)
    worker = DeliveryWorker(hooks, FAST)
    try:
        endpoint, secret = await hooks.add(receiver.url, events=["conversation.handoff"])
        event = _event()
        assert await hooks.publish(event) == 1
        assert await hooks.publish(event) == 0  # the same event is queued once
        assert await hooks.publish(_event("feedback.created")) == 0  # not subscribed
        assert await worker.run_once() == 1
        [request] = receiver.requests
        headers = request["headers"]
        assert verify_signature(secret, timestamp=headers["X-Botkit-Timestamp"], body=request["body"],
                                signature=headers["X-Botkit-Signature"])
        assert headers["X-Botkit-Event"] == "conversation.handoff" and headers["X-Botkit-Delivery"] == event.id
        payload = json.loads(request["body"])
        assert payload["type"] == "conversation.handoff" and payload["data"]["conversation_id"] == event.conversation_id
        assert await worker.run_once(now=datetime.now(timezone.utc) + timedelta(days=1)) == 0  # never twice
        assert len(receiver.requests) == 1
        [delivery] = await hooks.deliveries()
        assert delivery.status == "delivered" and delivery.attempts == 1 and delivery.endpoint_id == endpoint.id
    finally:
        await worker.aclose()
        await hooks.aclose()


async def test_retried_after_a_500_with_backoff_then_given_up(receiver: Receiver, db_url: str) -> None:
    hooks = await _hooks(db_url)
    worker = DeliveryWorker(hooks, FAST)
    try:
        await hooks.add(receiver.url)
        receiver.statuses = [500]
        await hooks.publish(_event())
        assert await worker.run_once() == 1
        [pending] = await hooks.deliveries()
        assert pending.status == "pending" and pending.attempts == 1 and pending.last_status == 500
        assert "HTTP 500" in (pending.last_error or "")
        assert pending.next_attempt_at > datetime.now(timezone.utc) + timedelta(seconds=50)  # backoff
        assert await worker.run_once() == 0  # not due yet
        assert await worker.run_once(now=pending.next_attempt_at) == 1
        [done] = await hooks.deliveries()
        assert done.status == "delivered" and done.attempts == 2
        first, second = receiver.requests
        assert first["headers"]["X-Botkit-Delivery"] == second["headers"]["X-Botkit-Delivery"]

        receiver.statuses = [503, 503, 503]
        await hooks.publish(_event())
        later = datetime.now(timezone.utc)
        for _ in range(FAST.max_attempts):
            later += timedelta(days=1)
            await worker.run_once(now=later)
        failed = (await hooks.deliveries(status="failed"))[0]
        assert failed.attempts == FAST.max_attempts and failed.failed_at is not None
        assert await worker.retry(failed.id) and await worker.run_once() == 1  # an operator's retry
        assert (await hooks.deliveries())[0].status == "delivered"
    finally:
        await worker.aclose()
        await hooks.aclose()


async def test_outbox_survives_a_restart(receiver: Receiver, db_url: str) -> None:
    receiver.statuses = [500]
    first = await _hooks(db_url)
    worker = DeliveryWorker(first, FAST.model_copy(update={"backoff_s": 0.2}))
    await first.add(receiver.url)
    worker.start()
    await first.publish(_event())
    await _wait(lambda: len(receiver.requests) == 1)
    await worker.aclose()  # the server stops with a delivery still pending
    await first.publish(_event("message.created"))
    await first.aclose()
    assert len(receiver.requests) == 1

    second = await _hooks(db_url)  # a new process: nothing but the database
    restarted = DeliveryWorker(second, FAST.model_copy(update={"backoff_s": 0.2}))
    restarted.start()
    try:
        await _wait(lambda: len(receiver.requests) == 3)
        assert {json.loads(r["body"])["type"] for r in receiver.requests[1:]} == {"conversation.handoff", "message.created"}
        for _ in range(100):  # the worker records the success just after the receiver answered
            if not await second.deliveries(status="pending"):
                break
            await asyncio.sleep(0.05)
        assert not await second.deliveries(status="pending")
        assert len(receiver.requests) == 3  # and nothing was delivered twice
    finally:
        await restarted.aclose()
        await second.aclose()


async def _wait(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    import asyncio

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_bot_turns_publish_events(make_bot: Callable[..., Bot], store_url: str) -> None:
    scripted = ScriptedBackend()
    scripted.enqueue("You can export from Settings [1].")
    engine = create_engine(store_url)
    hooks = Webhooks(engine)
    seen: list[BotEvent] = []

    async def observe(event: BotEvent) -> None:
        seen.append(event)

    try:
        async with make_bot([scripted]) as bot:
            await ensure_schema(engine)
            endpoint, _ = await hooks.add("http://127.0.0.1:9/never-called")
            bot.observers += [observe, hooks.observer]
            cid = "wh-" + uuid.uuid4().hex[:8]
            answered = await bot.reply(cid, "How do I export my data?")
            handed = await bot.reply(cid, "I want to talk to a human")
            await bot.feedback(cid, rating=-1, message_id=answered.message_id)
            again = await bot.reply(cid, "I want to talk to a human", channel_message_id=None)
        kinds = [e.type for e in seen]
        assert kinds[:5] == ["message.created", "message.created", "message.created", "message.created",
                             "conversation.handoff"]
        assert kinds[5] == "feedback.created" and seen[5].data["feedback"]["rating"] == -1
        assert seen[1].data["message"]["role"] == "assistant" and seen[1].data["message"]["citations"]
        assert seen[4].data["question"] == "I want to talk to a human" and handed.handoff
        assert kinds[6:] == ["message.created"] and again.handoff  # queued for the human: no new handoff event
        ours = [d for d in await hooks.deliveries(limit=50) if d.endpoint_id == endpoint.id]
        assert sorted(d.event_type for d in ours) == sorted(kinds)
    finally:
        await hooks.remove(endpoint.id)
        await engine.dispose()


def test_webhooks_cli(tmp_path: Path, receiver: Receiver) -> None:
    from botkit.cli import app

    (tmp_path / "bot.yaml").write_text("name: acme\n", encoding="utf-8")
    runner = CliRunner(env={"BOTKIT_TEST_POSTGRES_URL": None})
    added = runner.invoke(app, ["webhooks", "add", receiver.url, "-e", "conversation.handoff", "--json",
                                "--bot", str(tmp_path)])
    assert added.exit_code == 0, added.output
    endpoint = json.loads(added.stdout)
    assert endpoint["secret"].startswith("whsec_") and endpoint["events"] == ["conversation.handoff"]
    listed = runner.invoke(app, ["webhooks", "list", "--json", "--bot", str(tmp_path)])
    assert endpoint["secret"] not in listed.stdout and json.loads(listed.stdout)[0]["id"] == endpoint["id"]
    bad = runner.invoke(app, ["webhooks", "add", "ftp://x", "--bot", str(tmp_path)])
    assert bad.exit_code == 2 and "http(s)" in bad.output
    delivered = runner.invoke(app, ["webhooks", "deliver", "--bot", str(tmp_path)])
    assert delivered.exit_code == 0 and "attempted 0" in delivered.output
    assert runner.invoke(app, ["webhooks", "remove", endpoint["id"], "--bot", str(tmp_path)]).exit_code == 0
    assert runner.invoke(app, ["webhooks", "remove", endpoint["id"], "--bot", str(tmp_path)]).exit_code == 2
