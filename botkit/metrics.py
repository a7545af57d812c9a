"""Prometheus metrics of a botkit process, and the record of one turn that feeds them.

Every worker exposes these at ``/metrics`` (:func:`render`, the Prometheus text format).
With several worker processes (``botkit serve --workers N``) the CLI points
prometheus-client's multiprocess mode at a folder (``PROMETHEUS_MULTIPROC_DIR``), so a
scrape of any worker reports the sum over all of them (gauges: one series per process,
labelled ``pid``).

=======================================  ===================================================
``botkit_turn_stage_seconds{stage}``     ``retrieve``, ``lock_wait``, ``backend_first_token``,
                                         ``backend``, ``total`` (histogram)
``botkit_turns_total{outcome}``          ``answered``, ``abstained``, ``handoff``,
                                         ``kb_down``, ``failed``
``botkit_backend_calls_total``           per ``backend`` and ``outcome`` (ok, failed,
                                         timeout, skipped)
``botkit_backend_errors_total``          per ``backend`` and ``kind`` (rate_limited,
                                         server_error, timeout, connection, circuit_open,
                                         error)
``botkit_backend_seconds{backend}``      one attempt (histogram)
``botkit_tokens_total``                  per ``backend`` and ``kind`` (prompt, completion)
``botkit_circuit_state{backend}``        0 closed, 1 half-open, 2 open (per process)
``botkit_circuit_transitions_total``     per ``backend`` and ``state`` entered
``botkit_retrieval_seconds``             one retrieval (histogram);
                                         ``botkit_retrievals_total{outcome}`` ok / error
``botkit_lock_wait_seconds``             waiting for a conversation's turn lock
``botkit_ingest_runs_total``,            ingestion runs; sources by ``status``;
``botkit_ingest_sources_total``,         chunks in the index after the last run
``botkit_ingest_chunks``
``botkit_http_responses_total``          per ``method`` and ``status`` (web connector)
=======================================  ===================================================

prometheus-client is optional (the ``server`` extra): without it every function here is
a no-op and :func:`render` says how to install it.

The turn record: :func:`begin_turn` starts a :class:`TurnRecord` in a context variable;
the retriever (through :mod:`knowledge.observe`), the router and the dialogue manager add
their timings to it, and :func:`turn_done` observes the histograms, writes the turn's log
line (:mod:`botkit.logging`) and, when enabled, its OpenTelemetry spans
(:mod:`botkit.tracing`).
"""

from __future__ import annotations

import contextvars
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

from knowledge import observe

log = logging.getLogger("botkit.turn")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus-client's own variable
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STATES = {"closed": 0, "half_open": 1, "open": 2}
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class _Null:
    """Stands in for a metric when prometheus-client is not installed."""

    def labels(self, *args: Any, **kwargs: Any) -> _Null:
        return self

    def inc(self, amount: float = 1) -> None:
        pass

    def observe(self, amount: float) -> None:
        pass

    def set(self, value: float) -> None:
        pass


class _Metrics:
    """The metric objects, created once per process."""

    def __init__(self) -> None:
        try:
            from prometheus_client import Counter, Gauge, Histogram
        except ImportError:  # the server extra is not installed
            null = _Null()
            self.available = False
            for name in ("stage", "turns", "backend_calls", "backend_errors", "backend_seconds", "tokens",
                         "circuit_state", "circuit_transitions", "retrieval", "retrievals", "lock_wait",
                         "ingest_runs", "ingest_sources", "ingest_chunks", "http"):
                setattr(self, name, null)
            return
        self.available = True
        b = _LATENCY_BUCKETS
        self.stage = Histogram("botkit_turn_stage_seconds", "Turn latency by stage.", ["stage"], buckets=b)
        self.turns = Counter("botkit_turns", "Turns by outcome.", ["outcome"])
        self.backend_calls = Counter("botkit_backend_calls", "Backend attempts by outcome.", ["backend", "outcome"])
        self.backend_errors = Counter("botkit_backend_errors", "Backend failures by kind.", ["backend", "kind"])
        self.backend_seconds = Histogram("botkit_backend_seconds", "One backend attempt.", ["backend"], buckets=b)
        self.tokens = Counter("botkit_tokens", "Tokens by backend and kind.", ["backend", "kind"])
        self.circuit_state = Gauge("botkit_circuit_state", "Circuit breaker: 0 closed, 1 half-open, 2 open.",
                                   ["backend"], multiprocess_mode="liveall")
        self.circuit_transitions = Counter("botkit_circuit_transitions", "Circuit state changes by state entered.",
                                           ["backend", "state"])
        self.retrieval = Histogram("botkit_retrieval_seconds", "One knowledge-base retrieval.", buckets=b)
        self.retrievals = Counter("botkit_retrievals", "Retrievals by outcome.", ["outcome"])
        self.query_vectors = Counter("botkit_query_vectors", "Query texts to embed, by where their vector came "
                                     "from (cache: knowledge.query_cache_size).", ["source"])
        self.lock_wait = Histogram("botkit_lock_wait_seconds", "Wait for a conversation's turn lock.", buckets=b)
        self.ingest_runs = Counter("botkit_ingest_runs", "Knowledge-base ingestion runs.")
        self.ingest_sources = Counter("botkit_ingest_sources", "Sources handled by ingestion, by status.", ["status"])
        self.ingest_chunks = Gauge("botkit_ingest_chunks", "Chunks in the index after the last ingestion.",
                                   multiprocess_mode="livemostrecent")
        self.http = Counter("botkit_http_responses", "HTTP responses by method and status.", ["method", "status"])


_metrics: _Metrics | None = None


def metrics() -> _Metrics:
    """The process's metric objects (created on first use)."""
    global _metrics
    if _metrics is None:
        _metrics = _Metrics()
        observe.add_listener(_on_knowledge_event)
    return _metrics


def render() -> tuple[bytes, str]:
    """``(body, content type)`` of a scrape: this process, or all workers in multiprocess mode."""
    m = metrics()
    if not m.available:
        return b"# prometheus-client is not installed: pip install 'botkit[server]'\n", CONTENT_TYPE
    from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

    folder = os.environ.get(MULTIPROC_ENV)
    if folder:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=folder)
        return generate_latest(registry), CONTENT_TYPE
    return generate_latest(REGISTRY), CONTENT_TYPE


def process_exited(pid: int | None = None) -> None:
    """Drop a finished worker's live gauges (multiprocess mode; called at shutdown)."""
    if os.environ.get(MULTIPROC_ENV) and metrics().available:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid())


# -- the turn record ---------------------------------------------------------------------


@dataclass
class Span:
    """A timed part of a turn (for the trace)."""

    name: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class TurnRecord:
    """Timings gathered while one turn runs (see the module docstring)."""

    started: float = field(default_factory=time.perf_counter)
    started_ns: int = field(default_factory=time.time_ns)
    tracing: bool = False
    retrieve_s: float | None = None
    retrieval_ok: bool = True
    lock_wait_s: float | None = None
    first_token_s: float | None = None
    backend_s: float | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)

    def span(self, name: str, seconds: float, **attributes: Any) -> None:
        """Record a part that just ended and took ``seconds``."""
        if self.tracing:
            end = time.time_ns()
            self.spans.append(Span(name, end - int(seconds * 1e9), end, attributes))


_current: contextvars.ContextVar[TurnRecord | None] = contextvars.ContextVar("botkit_turn", default=None)


def begin_turn(config: Any = None) -> TurnRecord:
    """Start the record of a turn in the current context (the turn's task)."""
    metrics()
    observability = getattr(config, "observability", None)
    record = TurnRecord(tracing=bool(getattr(observability, "otel", False)))
    _current.set(record)
    return record


def current_turn() -> TurnRecord | None:
    """The running turn's record, if any."""
    return _current.get()


def lock_waited(seconds: float) -> None:
    """The turn waited ``seconds`` for its conversation's lock."""
    metrics().lock_wait.observe(seconds)
    metrics().stage.labels("lock_wait").observe(seconds)
    record = _current.get()
    if record is not None:
        record.lock_wait_s = seconds
        record.span("botkit.lock_wait", seconds)


def first_token(backend: str, seconds: float) -> None:
    """The backend's first text arrived ``seconds`` after the attempt started."""
    metrics().stage.labels("backend_first_token").observe(seconds)
    record = _current.get()
    if record is not None and record.first_token_s is None:
        record.first_token_s = seconds


def backend_attempt(backend: str, outcome: str, seconds: float, error: BaseException | None = None) -> None:
    """One router attempt: ``ok``, ``failed``, ``timeout`` or ``skipped`` (circuit open)."""
    m = metrics()
    m.backend_calls.labels(backend, outcome).inc()
    if outcome != "skipped":
        m.backend_seconds.labels(backend).observe(seconds)
    if outcome != "ok":
        m.backend_errors.labels(backend, error_kind(outcome, error)).inc()
    record = _current.get()
    if record is not None:
        attempt: dict[str, Any] = {"backend": backend, "outcome": outcome, "ms": round(seconds * 1000, 1)}
        if error is not None:  # the server's words: redacted by botkit.logging's filter like everything else
            attempt["error"] = f"{type(error).__name__}: {error}"[:300]
        record.attempts.append(attempt)
        if outcome == "ok":
            record.backend_s = seconds
            m.stage.labels("backend").observe(seconds)
        if outcome != "skipped":
            record.span("botkit.backend", seconds, backend=backend, outcome=outcome)


def error_kind(outcome: str, error: BaseException | None) -> str:
    """A small fixed vocabulary for backend failures (metric label values)."""
    if outcome == "skipped":
        return "circuit_open"
    if outcome == "timeout":
        return "timeout"
    text = str(error or "")
    if "HTTP 429" in text:
        return "rate_limited"
    if "HTTP 5" in text:
        return "server_error"
    if "connection failed" in text:
        return "connection"
    if type(error).__name__ == "BackendTimeout":
        return "timeout"
    return "error"


_circuits: dict[str, str] = {}


def circuit(backend: str, state: str) -> None:
    """A breaker's state now (``closed``, ``half_open``, ``open``); a change is counted.

    Open → half-open happens with time, unobserved, so it is counted when the first
    trial call is let through.
    """
    m = metrics()
    m.circuit_state.labels(backend).set(STATES.get(state, 0))
    if _circuits.get(backend, "closed") != state:
        m.circuit_transitions.labels(backend, state).inc()
    _circuits[backend] = state


def turn_done(
    *, conversation_id: str, message_id: int | None, reply_to: int | None, backend: str | None,
    latency_ms: float, prompt_tokens: int | None, completion_tokens: int | None,
    abstained: bool, handoff: bool, answered: bool, citations: int = 0,
) -> None:
    """Observe a finished turn, write its log line and its trace (see the module docstring)."""
    from botkit.logging import request_id, turn_line

    m = metrics()
    record = _current.get()
    if handoff:
        outcome = "handoff"
    elif record is not None and not record.retrieval_ok:
        outcome = "kb_down"
    elif answered:
        outcome = "answered"
    elif abstained:
        outcome = "abstained"
    else:
        outcome = "failed"
    m.turns.labels(outcome).inc()
    m.stage.labels("total").observe(latency_ms / 1000)
    if backend and prompt_tokens:
        m.tokens.labels(backend, "prompt").inc(prompt_tokens)
    if backend and completion_tokens:
        m.tokens.labels(backend, "completion").inc(completion_tokens)
    fields: dict[str, Any] = {
        "conversation_id": conversation_id, "request_id": request_id(), "message_id": message_id,
        "reply_to": reply_to, "outcome": outcome, "backend": backend, "total_ms": round(latency_ms, 1),
        "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "citations": citations,
    }
    if record is not None:
        fields.update(
            retrieve_ms=_ms(record.retrieve_s), lock_wait_ms=_ms(record.lock_wait_s),
            first_token_ms=_ms(record.first_token_s), backend_ms=_ms(record.backend_s),
            attempts=record.attempts or None,
        )
    turn_line(log, fields)
    if record is not None and record.tracing:
        from botkit.tracing import export_turn

        export_turn(record, fields)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def _on_knowledge_event(event: str, **fields: Any) -> None:
    m = metrics()
    if event == "retrieve":
        seconds, ok = float(fields.get("seconds", 0.0)), bool(fields.get("ok", True))
        m.retrieval.observe(seconds)
        m.retrievals.labels("ok" if ok else "error").inc()
        m.stage.labels("retrieve").observe(seconds)
        record = _current.get()
        if record is not None:
            record.retrieve_s = seconds
            record.retrieval_ok = ok
            record.span("botkit.retrieve", seconds, passages=int(fields.get("passages", 0)), ok=ok)
    elif event == "query_vectors":
        for source in ("cache", "model"):
            count = int(fields.get(source, 0))
            if count:
                m.query_vectors.labels(source).inc(count)
    elif event == "ingest":
        report = fields.get("report")
        m.ingest_runs.inc()
        for status in ("added", "updated", "removed", "unchanged"):
            count = int(getattr(report, status, 0) or 0)
            if count:
                m.ingest_sources.labels(status).inc(count)
        failed = len(getattr(report, "failed", ()) or ())
        if failed:
            m.ingest_sources.labels("failed").inc(failed)
        m.ingest_chunks.set(int(getattr(report, "chunks", 0) or 0))


__all__ = [
    "CONTENT_TYPE", "TurnRecord", "backend_attempt", "begin_turn", "circuit", "current_turn", "first_token",
    "lock_waited", "metrics", "process_exited", "render", "turn_done",
]
