"""The web app factory: ``create_app(bot) -> FastAPI``, testable without a socket.

``botkit serve`` builds the app with :func:`create_app` for one worker, and points
uvicorn at :func:`app_from_env` (``connectors.web.app:app_from_env``, ``factory=True``)
for several: each worker process then builds its own bot from the directory named by
``BOTKIT_BOT``, which the CLI sets.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

import botkit
from botkit import heap
from botkit import metrics as botkit_metrics
from botkit.bot import Bot
from botkit.config import WebSettings
from botkit.errors import BotkitError, InvalidMessage
from connectors.web import api, openai_compat, service
from connectors.web.deps import WebState
from connectors.web.observability import RequestIdMiddleware
from connectors.web.observability import router as metrics_router
from connectors.web.security import (
    BodySizeLimitMiddleware,
    ConversationTokens,
    OriginPolicy,
    RateLimiter,
    SecurityHeadersMiddleware,
    load_secret,
    normalize_origin,
    public_key,
)

BOT_DIR_ENV = "BOTKIT_BOT"
SHUTDOWN_GRACE_S = 10.0
_OPENAI_TYPES = {401: "invalid_request_error", 403: "permission_error", 404: "invalid_request_error",
                 429: "rate_limit_error"}
_OPENAI_CODES = {401: "invalid_api_key", 429: "rate_limit_exceeded"}


def create_app(
    bot: Bot, *, settings: WebSettings | None = None, owns_bot: bool = True, ingest_on_start: bool = False,
    settle_heap: bool = False,
) -> FastAPI:
    """Build the web app for ``bot``: API, SSE, OpenAI-compatible API, widget and demo page.

    ``settings`` replaces the bot's ``web:`` section (tests, embedding apps). With
    ``owns_bot`` the app's lifespan starts the bot (and ingests when the index is empty
    or stale, if ``ingest_on_start``) and closes it at shutdown; otherwise the caller
    does. ``settle_heap``: once started, freeze the process's long-lived objects out of
    the garbage collector's full passes (:func:`botkit.heap.settle`; for the process that
    serves, not for tests that build many apps). Reads the server secret (creating
    ``<data_dir>/secret.key`` if needed).
    """
    web = settings or bot.config.web
    config = bot.config.model_copy(update={"web": web})
    secret = load_secret(config)
    state = WebState(
        bot=bot, settings=web, tokens=ConversationTokens(secret), public_key=public_key(config, secret),
        origins=OriginPolicy(web.allowed_origins), ip_limiter=RateLimiter(web.rate_limit_per_minute),
        conversation_limiter=RateLimiter(web.conversation_rate_limit_per_minute),
        max_message_chars=config.limits.max_message_chars,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if owns_bot:
            await bot.start()
            if ingest_on_start:
                await bot.ingest_if_needed()
        if settle_heap:
            heap.settle()
        try:
            yield
        finally:
            if state.tasks:  # let detached turns finish storing their replies
                await asyncio.wait(set(state.tasks), timeout=SHUTDOWN_GRACE_S)
            await state.aclose()
            if owns_bot:
                await bot.aclose()
            botkit_metrics.process_exited()  # observability: drop this worker's live gauges

    app = FastAPI(
        title=f"{bot.name} (botkit)", version=botkit.__version__, lifespan=lifespan, redoc_url=None,
        description="The bot's HTTP API: conversations (public key + per-conversation tokens), "
        "Server-Sent Events streaming, admin endpoints and an OpenAI-compatible API (API keys).",
    )
    app.state.web = state
    for router in (api.api, api.admin, openai_compat.router, api.health, api.pages):
        app.include_router(router)
    if config.observability.metrics:  # observability: Prometheus text format at /metrics
        app.include_router(metrics_router)
    app.mount("/static", StaticFiles(directory=str(api.STATIC)), name="static")
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(BotkitError, _botkit_error)  # type: ignore[arg-type]
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=web.max_body_bytes)
    origins = ["*"] if "*" in web.allowed_origins else [normalize_origin(o) for o in web.allowed_origins]
    app.add_middleware(
        CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST"], allow_credentials=False,
        allow_headers=["Authorization", "Content-Type", "X-Bot-Key", "Accept"], expose_headers=["Retry-After"],
        max_age=600,
    )
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(RequestIdMiddleware)  # observability: X-Request-ID, response counts (outermost)
    if config.slack.signing_secret and config.slack.bot_token:  # Slack events and buttons at /slack/events
        from connectors.slack.asgi import mount
        mount(app, bot)
    if config.console.enabled:  # agent console, analytics, webhook delivery (connectors.web.console)
        from connectors.web.console import mount as mount_console
        mount_console(app, bot, secret=secret)
    return app


def app_from_env() -> FastAPI:
    """App factory for multi-worker uvicorn: the bot directory comes from ``$BOTKIT_BOT``.

    The one environment read outside :mod:`botkit.config`: worker processes cannot be
    handed arguments, so the CLI (the composition root) passes the directory this way.
    """
    bot = Bot.from_dir(os.environ.get(BOT_DIR_ENV, "."))
    from botkit.logging import configure  # observability: JSON lines, secrets redacted (each worker)

    configure(bot.config)
    return create_app(bot, settle_heap=True)


def _is_openai(request: Request) -> bool:
    return request.url.path.startswith("/v1/")


def _openai_error(status: int, message: str, *, type: str, code: str | None = None, param: str | None = None,
                  headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": type, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    headers = dict(exc.headers or {})
    if _is_openai(request) or isinstance(exc, openai_compat.OpenAIError):
        if isinstance(exc, openai_compat.OpenAIError):
            return _openai_error(exc.status_code, exc.detail, type=exc.type, code=exc.code, param=exc.param,
                                 headers=headers)
        return _openai_error(exc.status_code, str(exc.detail), type=_OPENAI_TYPES.get(exc.status_code, "api_error"),
                             code=_OPENAI_CODES.get(exc.status_code), headers=headers)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    if _is_openai(request):
        first: dict[str, Any] = errors[0] if errors else {}
        param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        message = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'body'}: {e.get('msg')}"
                            for e in errors)
        return _openai_error(400, message, type="invalid_request_error", param=param)
    return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)


async def _botkit_error(request: Request, exc: BotkitError) -> JSONResponse:
    problem = service.error_status(exc)
    headers = {"Retry-After": str(problem.retry_after)} if problem.retry_after else None
    if _is_openai(request):
        status = 400 if problem.status == 422 else problem.status
        return _openai_error(status, problem.message, type=problem.type, headers=headers)
    if isinstance(exc, InvalidMessage):
        detail = [{"loc": ["body", "text"], "msg": problem.message, "type": problem.type}]
        return JSONResponse({"detail": detail}, status_code=422)
    return JSONResponse({"detail": problem.message, "type": problem.type}, status_code=problem.status,
                        headers=headers)
