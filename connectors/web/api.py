"""Routes of the HTTP API, the health probes and the widget's files. Each route is a few
lines: auth and limits are dependencies (:mod:`.deps`), translation is :mod:`.service`."""

from __future__ import annotations

import dataclasses
import functools
import html
from importlib import resources
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse

from connectors.web import protocol as p
from connectors.web import service
from connectors.web.deps import AdminKey, ConversationId, State, limit_ip, require_public_key, too_many

STATIC = resources.files("connectors.web") / "static"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

api = APIRouter(prefix="/api/v1", dependencies=[Depends(limit_ip)], tags=["conversations"])
admin = APIRouter(prefix="/api/v1/admin", dependencies=[Depends(limit_ip)], tags=["admin"])
health = APIRouter(tags=["health"])
pages = APIRouter(include_in_schema=False)

_STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {"schema": {"type": "string", "description": (
        "With `Accept: text/event-stream`: SSE events `delta` {text}, `citations` {citations}, "
        "`done` (the reply object) and `error` {error: {type, message}}.")}}}},
}


@api.get("/widget/config", response_model=p.WidgetConfig, tags=["widget"])
async def widget_config(state: State) -> p.WidgetConfig:
    """Display settings for the widget (from bot.yaml's ``web:`` section)."""
    web = state.settings
    return p.WidgetConfig(name=state.bot.name, title=web.title, greeting=web.greeting,
                          primary_color=web.primary_color, position=web.position,
                          max_message_chars=state.max_message_chars, suggestions=web.suggestions)


@api.post("/conversations", response_model=p.ConversationCreated, status_code=201,
          dependencies=[Depends(require_public_key)])
async def create_conversation(state: State, body: p.ConversationCreate | None = None) -> p.ConversationCreated:
    """Start a conversation (needs ``X-Bot-Key`` from an allowed origin); returns its token."""
    conversation_id = await state.bot.new_conversation(
        channel=service.CHANNEL, metadata=body.metadata if body else None)
    return p.ConversationCreated(id=conversation_id, token=state.tokens.issue(conversation_id))


@api.post("/conversations/{conversation_id}/messages", response_model=p.ReplyOut, responses=_STREAM_DOC)
async def post_message(request: Request, conversation_id: ConversationId, body: p.MessageIn, state: State) -> Any:
    """Send a message; the reply as JSON, or as SSE with ``Accept: text/event-stream``."""
    problem = service.text_problem(body.text, state.max_message_chars)
    if problem:
        raise RequestValidationError([{"loc": ("body", "text"), "msg": problem, "type": "value_error"}])
    wait = state.conversation_limiter.hit(conversation_id)
    if wait is not None:
        raise too_many(wait, "in this conversation")
    incoming = service.to_incoming(conversation_id, body.text, client_message_id=body.client_message_id)
    if "text/event-stream" in request.headers.get("accept", ""):
        stream = service.DetachedStream(state.bot.handle_stream(incoming), state.tasks)
        await stream.start()
        return StreamingResponse(stream.frames(), media_type="text/event-stream", headers=SSE_HEADERS)
    return JSONResponse(service.render(await state.bot.handle(incoming)))


@api.get("/conversations/{conversation_id}/messages", response_model=p.History)
async def get_history(conversation_id: ConversationId, state: State,
                      limit: Annotated[int, Query(ge=1, le=200)] = 50) -> p.History:
    """The conversation's last ``limit`` messages, oldest first."""
    messages = await state.bot.history(conversation_id, limit=limit)
    return p.History(conversation_id=conversation_id,
                     messages=[p.MessageOut(**service.render_message(m)) for m in messages])


@api.post("/conversations/{conversation_id}/feedback", response_model=p.FeedbackRecorded)
async def post_feedback(conversation_id: ConversationId, body: p.FeedbackIn, state: State) -> p.FeedbackRecorded:
    """Rate the conversation or one of its bot messages (thumbs up / down)."""
    if body.message_id is not None:
        message = await state.bot.store.get_message(body.message_id)
        if message is None or message.conversation_id != conversation_id:
            raise HTTPException(404, "no such message in this conversation")
    await state.bot.feedback(conversation_id, rating=body.score, message_id=body.message_id, comment=body.comment)
    return p.FeedbackRecorded()


@admin.get("/conversations", response_model=p.ConversationList)
async def list_conversations(
    state: State, _key: AdminKey,
    conversation_state: Annotated[Literal["bot", "handoff", "closed"] | None, Query(alias="state")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50, offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> p.ConversationList:
    """This bot's conversations, most recently active first (needs an API key)."""
    found = await state.bot.list_conversations(state=conversation_state, limit=limit, offset=offset)
    summaries = [p.ConversationSummary(**service.render_conversation(c)) for c in found]
    return p.ConversationList(conversations=summaries, limit=limit, offset=offset)


@admin.post("/ingest", response_model=p.IngestResult)
async def ingest(state: State, _key: AdminKey, rebuild: bool = False) -> p.IngestResult:
    """Sync the knowledge base with its sources now (needs an API key)."""
    report = await state.bot.ingest(rebuild=rebuild)
    return p.IngestResult(ingested=True, report=_as_dict(report))


@health.get("/healthz", response_model=p.Health)
async def healthz() -> p.Health:
    """The process is alive."""
    return p.Health(status="ok")


@health.get("/readyz", response_model=p.Health, responses={503: {"model": p.Health}})
async def readyz(state: State) -> Any:
    """200 once the store and the knowledge index answer, else 503."""
    checks = await state.bot.ready()
    ok = all(checks.values())
    body = p.Health(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@pages.get("/")
async def demo_page(state: State) -> HTMLResponse:
    """A demo help-centre page with the widget on it."""
    page = _demo_template().replace("{{BOT_KEY}}", html.escape(state.public_key, quote=True)).replace(
        "{{BOT_NAME}}", html.escape(state.bot.name))
    return HTMLResponse(page)


@pages.get("/widget.js")
async def widget_js() -> Response:
    """The embeddable widget (plain JavaScript, no build step)."""
    return FileResponse(str(STATIC / "widget.js"), media_type="text/javascript; charset=utf-8",
                        headers={"Cache-Control": "public, max-age=300"})


@functools.lru_cache(maxsize=1)
def _demo_template() -> str:
    return (STATIC / "demo.html").read_text(encoding="utf-8")


def _as_dict(report: Any) -> dict[str, Any] | None:
    if report is None:
        return None
    if dataclasses.is_dataclass(report) and not isinstance(report, type):
        return dataclasses.asdict(report)
    if hasattr(report, "model_dump"):
        return dict(report.model_dump())
    return {"summary": str(report)}
