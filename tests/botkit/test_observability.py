"""Metrics, the turn's structured log line, secrets kept out of logs, request ids, tracing.

Turns run through a real :class:`Bot` (SQLite store, router, OpenAI backend talking HTTP
to the local stub) with a stand-in knowledge base, so no embedding model is loaded.
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from botkit import logging as botkit_logging
from botkit import metrics
from botkit.bot import Bot
from botkit.config import BotConfig, EscalationSettings, LimitsSettings, ObservabilitySettings, OpenAISettings
from knowledge.observe import emit
from knowledge.types import Passage
from tests.helpers.openai_stub import OpenAIStub, StubReply
from tests.helpers.processes import metric

API_KEY = "sk-test-Zq8W3xR5t7Y9u1I3o5P7a9S1d3F5g7H9"


class _Retriever:
    def __init__(self) -> None:
        self.down = False

    def retrieve(self, query: str, *, k: int | None = None, message: str | None = None) -> list[Passage]:
        started = time.perf_counter()
        if self.down:
            from knowledge.errors import IndexUnavailable

            emit("retrieve", seconds=time.perf_counter() - started, passages=0, ok=False)
            raise IndexUnavailable("vector store: cannot search: connection refused")
        time.sleep(0.002)
        passage = Passage(chunk_id="c1", source="account/reset.md", title="Resetting your password", section="",
                          text="Click Forgot password on the sign-in page. The link is valid for one hour.", score=0.8)
        emit("retrieve", seconds=time.perf_counter() - started, passages=1, ok=True)
        return [passage]


class _Embedder:
    def embed(self, texts: list[str]) -> list[list[float]]:
        return [[0.0] for _ in texts]


class FakeKnowledge:
    """What Bot needs of a knowledge base."""

    def __init__(self) -> None:
        self.retriever = _Retriever()
        self.embedder = _Embedder()

    def close(self) -> None:
        pass


@pytest.fixture
def stub() -> Iterator[OpenAIStub]:
    with OpenAIStub(default=StubReply(text="Use Forgot password on the sign-in page [1].")) as server:
        yield server


def _config(tmp_path: Path, stub: OpenAIStub, **observability: Any) -> BotConfig:
    return BotConfig(
        name="observed", backends=["openai:stub-model", "extractive"], data_dir=str(tmp_path / "data"),
        openai=OpenAISettings(api_key=API_KEY, base_url=stub.base_url, timeout_s=20, max_retries=0),
        limits=LimitsSettings(breaker_failures=2, breaker_cooldown_s=60), escalation=EscalationSettings(enabled=False),
        observability=ObservabilitySettings(**observability), root=tmp_path,
    )


@pytest_asyncio.fixture
async def bot(tmp_path: Path, stub: OpenAIStub) -> AsyncIterator[Bot]:
    the_bot = Bot(_config(tmp_path, stub), knowledge=FakeKnowledge())
    await the_bot.start()
    try:
        yield the_bot
    finally:
        await the_bot.aclose()


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Everything logged (DEBUG and up, any logger) through botkit's JSON handler."""
    out = io.StringIO()
    handler = botkit_logging.handler(out)
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


async def test_one_json_line_per_turn_and_no_api_key_anywhere(bot: Bot, stub: OpenAIStub,
                                                               captured: io.StringIO) -> None:
    botkit_logging.register_secrets(botkit_logging.secrets_of(bot.config))
    token = botkit_logging.bind_request_id("req-123")
    try:
        ok = await bot.reply("conv-log", "How do I reset my password?")
        stub.enqueue(StubReply(status=401, error_message=f"Incorrect API key provided: {API_KEY}",
                               error_type="invalid_request_error", error_code="invalid_api_key"))
        fallback = await bot.reply("conv-log", "And the link, how long is it valid?")
        stub.enqueue(StubReply.server_error(message=f"upstream rejected Authorization: Bearer {API_KEY}"))
        await bot.reply("conv-log", "Thanks, one more question")
    finally:
        botkit_logging.reset_request_id(token)
    assert ok.backend == "openai:stub-model" and fallback.backend == "extractive"
    assert all(r.headers.get("authorization") == f"Bearer {API_KEY}" for r in stub.chat_requests)  # it was used
    output = captured.getvalue()
    assert API_KEY not in output and API_KEY[3:20] not in output
    assert botkit_logging.REDACTED in output  # the failures were logged, redacted
    lines = [json.loads(line) for line in output.splitlines()]
    turns = [line for line in lines if line.get("event") == "turn"]
    assert len(turns) == 3
    first = turns[0]
    assert first["logger"] == "botkit.turn" and first["conversation_id"] == "conv-log"
    assert first["request_id"] == "req-123" and first["outcome"] == "answered"
    assert first["backend"] == "openai:stub-model" and first["prompt_tokens"] == 11
    assert first["completion_tokens"] > 0 and first["total_ms"] > 0
    assert first["retrieve_ms"] >= 0 and first["first_token_ms"] > 0 and "lock_wait_ms" in first
    assert turns[1]["backend"] == "extractive"
    assert [a["outcome"] for a in turns[1]["attempts"]] == ["failed", "ok"]
    assert not any("How do I reset" in line for line in output.splitlines())  # no message text in logs


def test_redaction_of_key_shapes() -> None:
    text = botkit_logging.redact("key sk-abcdefghijklmnop, Bearer abc.def-123456, xoxb-12345-67890, bk_1234_secretpart")
    assert text.count(botkit_logging.REDACTED) == 4 and "abcdefghijklmnop" not in text


async def test_metrics_by_stage_backend_and_circuit(bot: Bot, stub: OpenAIStub) -> None:
    before = metrics.render()[0].decode()
    await bot.reply("conv-m", "How do I reset my password?")
    stub.enqueue(StubReply.rate_limited(retry_after="1"), StubReply.server_error())
    await bot.reply("conv-m", "How do I reset my password again?")  # 429: fallback to extractive
    await bot.reply("conv-m", "Where do I reset the password?")  # 500: second failure opens the circuit
    skipped = await bot.reply("conv-m", "How long is the password link valid?")  # skipped while open
    bot.knowledge.retriever.down = True
    down = await bot.reply("conv-m", "How do I reset my password?")
    bot.knowledge.retriever.down = False
    after = metrics.render()[0].decode()

    def delta(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert skipped.backend == "extractive" and "knowledge base" in down.text
    for stage in ("retrieve", "lock_wait", "backend_first_token", "backend", "total"):
        assert delta("botkit_turn_stage_seconds_count", stage=stage) >= 1, stage
    assert delta("botkit_turns_total", outcome="answered") == 4
    assert delta("botkit_turns_total", outcome="kb_down") == 1
    assert delta("botkit_backend_calls_total", backend="openai:stub-model", outcome="ok") == 1
    assert delta("botkit_backend_errors_total", backend="openai:stub-model", kind="rate_limited") == 1
    assert delta("botkit_backend_errors_total", backend="openai:stub-model", kind="server_error") == 1
    assert delta("botkit_backend_errors_total", backend="openai:stub-model", kind="circuit_open") >= 1
    assert delta("botkit_circuit_transitions_total", backend="openai:stub-model", state="open") == 1
    assert metric(after, "botkit_circuit_state", backend="openai:stub-model") == 2
    assert delta("botkit_retrievals_total", outcome="error") == 1
    assert delta("botkit_tokens_total", backend="openai:stub-model", kind="prompt") == 11


def test_breaker_transitions_are_counted() -> None:
    import asyncio

    from botkit.backends.base import ChatMessage, Prompt
    from botkit.backends.scripted import ScriptedBackend
    from botkit.errors import BackendUnavailable
    from botkit.router import BreakerPolicy, Router

    now = [0.0]
    backend = ScriptedBackend(model="breaker-test")
    router = Router([backend, ScriptedBackend(model="spare")],
                    breaker=BreakerPolicy(failure_threshold=1, cooldown_s=10, clock=lambda: now[0]))
    prompt = Prompt(messages=[ChatMessage("user", "hi")], question="hi", passages=[])
    before = metrics.render()[0].decode()
    backend.enqueue(BackendUnavailable("down"))
    asyncio.run(router.generate(prompt))  # fails over; circuit opens
    asyncio.run(router.generate(prompt))  # skipped
    now[0] = 11.0
    asyncio.run(router.generate(prompt))  # half-open trial succeeds; closed
    after = metrics.render()[0].decode()
    name = backend.spec
    for state, count in (("open", 1), ("half_open", 1), ("closed", 1)):
        assert metric(after, "botkit_circuit_transitions_total", backend=name, state=state) - metric(
            before, "botkit_circuit_transitions_total", backend=name, state=state) == count, state
    assert metric(after, "botkit_circuit_state", backend=name) == 0


async def test_request_id_header_and_metrics_endpoint() -> None:
    from fastapi import FastAPI

    from connectors.web.observability import RequestIdMiddleware
    from connectors.web.observability import router as metrics_router

    app = FastAPI()
    seen: list[str | None] = []

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        seen.append(botkit_logging.request_id())
        return {"ok": "yes"}

    app.include_router(metrics_router)
    app.add_middleware(RequestIdMiddleware)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        given = await http.get("/ping", headers={"X-Request-ID": "abc-123"})
        forged = await http.get("/ping", headers={"X-Request-ID": 'evil"\n{"level":"error"}'})
        scrape = await http.get("/metrics")
    assert given.headers["x-request-id"] == "abc-123" and seen[0] == "abc-123"
    assert forged.headers["x-request-id"] != seen[0] and len(forged.headers["x-request-id"]) == 16
    assert seen[1] == forged.headers["x-request-id"]  # an unsafe id is replaced, never logged
    assert scrape.status_code == 200 and scrape.headers["content-type"].startswith("text/plain")
    assert 'botkit_http_responses_total{method="GET",status="200"}' in scrape.text


async def test_otel_spans_for_a_turn(tmp_path: Path, stub: OpenAIStub) -> None:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
        InMemorySpanExporter,
    )

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)  # once per process; later calls are ignored with a warning
    current = trace.get_tracer_provider()
    if current is not provider:  # another test set it first: add our exporter to it
        current.add_span_processor(SimpleSpanProcessor(exporter))  # type: ignore[attr-defined]
    the_bot = Bot(_config(tmp_path, stub, otel=True), knowledge=FakeKnowledge())
    try:
        await the_bot.reply("conv-otel", "How do I reset my password?")
    finally:
        await the_bot.aclose()
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert {"botkit.turn", "botkit.retrieve", "botkit.lock_wait", "botkit.backend"} <= set(spans)
    turn = spans["botkit.turn"]
    assert turn.attributes["botkit.conversation_id"] == "conv-otel"
    assert spans["botkit.retrieve"].parent.span_id == turn.context.span_id
    assert turn.start_time <= spans["botkit.retrieve"].start_time <= spans["botkit.backend"].end_time <= turn.end_time


async def test_otel_off_by_default(bot: Bot) -> None:
    assert bot.config.observability.otel is False
    record = metrics.begin_turn(bot.config)
    record.span("botkit.retrieve", 0.1)
    assert record.spans == []


def test_ingestion_counts() -> None:
    from knowledge.ingest import IngestReport

    before = metrics.render()[0].decode()
    metrics.metrics()
    emit("ingest", report=IngestReport(added=2, updated=1, unchanged=5, failed=[{"source": "x", "reason": "y"}],
                                       chunks=42))
    after = metrics.render()[0].decode()
    assert metric(after, "botkit_ingest_runs_total") - metric(before, "botkit_ingest_runs_total") == 1
    for status, count in (("added", 2), ("updated", 1), ("unchanged", 5), ("failed", 1)):
        assert metric(after, "botkit_ingest_sources_total", status=status) - metric(
            before, "botkit_ingest_sources_total", status=status) == count
    assert metric(after, "botkit_ingest_chunks") == 42


def test_query_vector_sources_are_counted() -> None:
    metrics.metrics()
    before = metrics.render()[0].decode()
    emit("query_vectors", cache=3, model=1)
    emit("query_vectors", cache=0, model=2)
    after = metrics.render()[0].decode()
    for source, expected in (("cache", 3), ("model", 3)):
        assert metric(after, "botkit_query_vectors_total", source=source) - metric(
            before, "botkit_query_vectors_total", source=source) == expected
