"""Request ids, response counts and the ``/metrics`` endpoint of the web app.

:class:`RequestIdMiddleware` gives each HTTP request an id (the client's ``X-Request-ID``
when it is a safe token, else a new one), binds it for the request's log lines and the
turn it runs (:mod:`botkit.logging`), returns it in ``X-Request-ID`` and counts responses
by method and status (``botkit_http_responses_total``). ``GET /metrics`` serves
:func:`botkit.metrics.render` (Prometheus text format; all workers' sums in multiprocess
mode). It is not rate limited and needs no key: expose it on the internal network only
(or turn it off with ``observability.metrics: false``).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from botkit import logging as botkit_logging
from botkit import metrics

HEADER = b"x-request-id"
router = APIRouter(include_in_schema=False)


@router.get("/metrics")
async def prometheus_metrics() -> Response:
    """Prometheus metrics of this worker (of all workers in multiprocess mode)."""
    body, content_type = metrics.render()
    return Response(body, media_type=content_type.split(";")[0], headers={"Content-Type": content_type})


class RequestIdMiddleware:
    """Binds a request id for the request and counts responses (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        metrics.metrics()  # create the metric objects before the first request

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope.get("headers", ()) if k == HEADER), b"")
        rid = botkit_logging.new_request_id(given.decode("latin-1") if given else None)
        token = botkit_logging.bind_request_id(rid)
        method = scope.get("method", "GET")

        async def with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k != HEADER]
                headers.append((HEADER, rid.encode("latin-1")))
                message = {**message, "headers": headers}
                metrics.metrics().http.labels(method, str(message["status"])).inc()
            await send(message)

        try:
            await self.app(scope, receive, with_id)
        finally:
            botkit_logging.reset_request_id(token)
