"""Optional OpenTelemetry spans for turns (``observability.otel: true``; ``pip install 'botkit[otel]'``).

Off by default. When enabled and ``opentelemetry`` is importable, each finished turn
becomes a ``botkit.turn`` span (attributes: conversation id, request id, outcome,
backend, token counts, latencies) with child spans for the parts the turn recorded
(``botkit.lock_wait``, ``botkit.retrieve``, one ``botkit.backend`` per attempt), all with
their real start and end times. botkit only uses the OpenTelemetry API: configure the
SDK and an exporter in your process (or run under ``opentelemetry-instrument``); without
an SDK the API's no-op tracer makes this free.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from botkit.metrics import TurnRecord

TRACER_NAME = "botkit"
log = logging.getLogger("botkit.tracing")
_warned = False


def tracer() -> Any | None:
    """The OpenTelemetry tracer, or ``None`` when the API is not installed."""
    global _warned
    try:
        from opentelemetry import trace
    except ImportError:
        if not _warned:
            _warned = True
            log.warning("observability.otel is on but opentelemetry is not installed: pip install 'botkit[otel]'")
        return None
    return trace.get_tracer(TRACER_NAME)


def export_turn(record: TurnRecord, fields: Mapping[str, Any]) -> None:
    """Emit the spans of one finished turn."""
    otel = tracer()
    if otel is None:
        return
    import time

    from opentelemetry import trace

    attributes = {f"botkit.{k}": v for k, v in fields.items() if isinstance(v, (str, int, float, bool))}
    turn = otel.start_span("botkit.turn", start_time=record.started_ns, attributes=attributes)
    context = trace.set_span_in_context(turn)
    for part in record.spans:
        child = otel.start_span(part.name, context=context, start_time=part.start_ns,
                                attributes={f"botkit.{k}": v for k, v in part.attributes.items()})
        child.end(end_time=part.end_ns)
    turn.end(end_time=time.time_ns())


__all__ = ["TRACER_NAME", "export_turn", "tracer"]
