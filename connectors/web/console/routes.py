"""Routes of the agent console (``/console``): sign-in, queue, conversations, analytics,
webhooks, and a Server-Sent Events stream that tells open pages to refresh.

Pages are GETs that need a session (else a redirect to the sign-in page); every other
method goes through :func:`~connectors.web.console.auth.action_session` (session + CSRF +
same origin) and answers with a redirect back to the page (post/redirect/get).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from botkit.agents import Session
from botkit.analytics.gaps import bot_gaps, gaps_csv
from botkit.analytics.metrics import compute_report
from botkit.analytics.report import REPORT_CSS, report_body
from botkit.inbox import InboxError, NotVisible
from connectors.web.console import auth, views
from connectors.web.console.state import ConsoleState, get_console
from connectors.web.deps import client_ip, too_many
from connectors.web.service import sse

router = APIRouter(prefix="/console", include_in_schema=False)
Console = Annotated[ConsoleState, Depends(get_console)]
NO_STORE = {"Cache-Control": "no-store"}
EVENT_POLL_S = 1.5
EVENT_TICKS = 80  # a stream ends after ~2 minutes; EventSource reconnects (and re-checks the session)


def _html(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers=NO_STORE)


def _back(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303, headers=NO_STORE)


@router.get("/login")
async def login_form(request: Request, console: Console, next: str | None = None) -> Response:
    """The sign-in page."""
    token, new = auth.login_token(request, console)
    response = _html(views.login_page(token=token, next_url=auth.safe_next(next)))
    if new:
        auth.set_login_cookie(response, request, console, token)
    return response


@router.post("/login")
async def login(request: Request, console: Console) -> Response:
    """Check the credentials; start a session."""
    auth.check_origin(request)
    form = await auth.read_form(request)
    auth.check_login_token(request, console, form)
    wait = console.login_limiter.hit(client_ip(request))
    if wait is not None:
        raise too_many(wait, "sign-in attempts from this address")
    agent = await console.agents.authenticate(form.get("email", ""), form.get("password", ""))
    if agent is None:
        page = views.login_page(token=form["csrf"], next_url=auth.safe_next(form.get("next")),
                                error="Wrong email or password.")
        return _html(page, 401)
    token, _ = await console.agents.start_session(agent, hours=console.settings.session_hours)
    response = _back(auth.safe_next(form.get("next")))
    auth.set_session_cookie(response, request, console, token)
    return response


@router.post("/logout")
async def logout(request: Request, console: Console) -> Response:
    """End the session."""
    await auth.action_session(request, console)
    await console.agents.end_session(auth.unsign(console.cookie_key, request.cookies.get(auth.SESSION_COOKIE)))
    response = _back("/console/login")
    auth.clear_session_cookie(response)
    return response


@router.get("")
async def queue(request: Request, console: Console, fragment: bool = False) -> Response:
    """Conversations waiting for a person, oldest first."""
    session = await auth.page_session(request, console)
    items = await console.inbox.queue(session.agent)
    return _html(views.queue_fragment(items, session) if fragment else views.queue_page(items, session))


async def _conversation_view(console: ConsoleState, session: Session, conversation_id: str, *, fragment: bool,
                             error: str | None = None, status: int = 200) -> Response:
    try:
        conversation = await console.inbox.conversation(session.agent, conversation_id)
    except NotVisible as exc:
        return _html(views.message_page("Not found", exc.message, session), 404)
    history = await console.bot.store.history(conversation_id, limit=200)
    notes = await console.inbox.notes(session.agent, conversation_id)
    claim = await console.inbox.claim_of(conversation_id)
    if fragment:
        return _html(views.conversation_fragment(conversation, history, notes, claim, session))
    return _html(views.conversation_page(conversation, history, notes, claim, session, error=error), status)


@router.get("/conversations/{conversation_id}")
async def conversation(request: Request, console: Console, conversation_id: str, fragment: bool = False) -> Response:
    """A conversation's history (citations, backends), notes and actions."""
    session = await auth.page_session(request, console)
    return await _conversation_view(console, session, conversation_id, fragment=fragment)


@router.post("/conversations/{conversation_id}/{action}")
async def act(request: Request, console: Console, conversation_id: str, action: str) -> Response:
    """``claim``, ``release``, ``reply``, ``notes``, ``handback`` or ``close``."""
    session, form = await auth.action_session(request, console)
    inbox, agent = console.inbox, session.agent
    try:
        if action == "claim":
            await inbox.claim(agent, conversation_id)
        elif action == "release":
            await inbox.release(agent, conversation_id)
        elif action == "reply":
            await inbox.reply(agent, conversation_id, form.get("text", ""))
        elif action == "notes":
            await inbox.add_note(agent, conversation_id, form.get("text", ""))
        elif action == "handback":
            await inbox.hand_back(agent, conversation_id)
        elif action == "close":
            await inbox.close(agent, conversation_id, form.get("resolution", ""))
        else:
            raise HTTPException(404, "unknown action")
    except NotVisible as exc:
        return _html(views.message_page("Not found", exc.message, session), 404)
    except InboxError as exc:
        return await _conversation_view(console, session, conversation_id, fragment=False, error=exc.message, status=409)
    return _back("/console" if action in ("handback", "close") else f"/console/conversations/{conversation_id}")


async def _version(console: ConsoleState, session: Session, conversation_id: str | None) -> Any:
    store, inbox = console.bot.store, console.inbox
    if conversation_id is None:
        bots = [None] if session.agent.role == "admin" else list(session.agent.bots)
        waiting = [c for bot in bots for c in await store.list_conversations(bot=bot, state="handoff", limit=200)]
        claims = await inbox.claims([c.id for c in waiting])
        return sorted((c.id, str(c.updated_at), getattr(claims.get(c.id), "agent_id", None)) for c in waiting)
    found = await store.get_conversation(conversation_id)
    claim = await inbox.claim_of(conversation_id)
    notes = await inbox.notes(session.agent, conversation_id)
    return (found and (found.state, str(found.updated_at)), claim and claim.agent_id, len(notes))


@router.get("/events")
async def events(request: Request, console: Console, conversation: str | None = None) -> Response:
    """SSE: a ``changed`` event whenever the queue (or one conversation) changes."""
    session = await auth.current_session(request, console)
    if session is None:
        raise HTTPException(401, "sign in first")
    if conversation is not None:
        try:
            await console.inbox.conversation(session.agent, conversation)
        except NotVisible as exc:
            raise HTTPException(404, exc.message) from None

    async def stream() -> AsyncIterator[bytes]:
        yield b"retry: 3000\n\n"
        last = await _version(console, session, conversation)
        for _ in range(EVENT_TICKS):
            await asyncio.sleep(EVENT_POLL_S)
            current = await _version(console, session, conversation)
            if current != last:
                last = current
                yield sse("changed", {"conversation": conversation})
            else:
                yield b": ping\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _since(value: str | None) -> dt.date:
    try:
        return dt.date.fromisoformat(value) if value else dt.date.today() - dt.timedelta(days=29)
    except ValueError:
        raise HTTPException(422, "since: use a date like 2024-06-01") from None


async def _gaps(console: ConsoleState, since: dt.date) -> Any:
    key = since.isoformat()
    found = console.cached_gaps(key)
    if found is None:
        start = dt.datetime.combine(since, dt.time(0), tzinfo=dt.timezone.utc)
        found = await bot_gaps(console.bot, console.engine, since=start)
        console.remember_gaps(key, found)
    return found


async def _analytics_session(request: Request, console: ConsoleState) -> Session:
    session = await auth.page_session(request, console)
    if not session.agent.can_see(console.bot.name):
        raise HTTPException(403, "you are not assigned to this bot")
    return session


@router.get("/analytics")
async def analytics(request: Request, console: Console, since: Annotated[str | None, Query()] = None) -> Response:
    """Metrics per day and channel, charts, sources, and the knowledge gaps."""
    session = await _analytics_session(request, console)
    first, bot = _since(since), console.bot
    sources = await asyncio.to_thread(lambda: sorted(bot.knowledge.manifest.entries()))
    report = await compute_report(console.engine, bot=bot.name, since=first, tz_name=bot.config.business_hours.timezone,
                                  prices=console.settings.prices, known_sources=sources)
    gaps = await _gaps(console, first)
    href = f"/console/analytics/gaps.csv?since={first.isoformat()}"
    return _html(views.analytics_page(report_body(report, gaps, gaps_csv_href=None), session, since=first.isoformat(),
                                      gaps_href=href))


@router.get("/analytics/gaps.csv")
async def gaps_download(request: Request, console: Console, since: Annotated[str | None, Query()] = None) -> Response:
    """The knowledge gaps as CSV."""
    await _analytics_session(request, console)
    first = _since(since)
    body = gaps_csv(await _gaps(console, first))
    return Response(body, media_type="text/csv; charset=utf-8", headers={
        **NO_STORE, "Content-Disposition": f'attachment; filename="knowledge-gaps-{first.isoformat()}.csv"'})


@router.get("/report.css")
async def report_css() -> Response:
    """The analytics charts' styles."""
    return Response(REPORT_CSS, media_type="text/css; charset=utf-8", headers={"Cache-Control": "public, max-age=300"})


async def _admin(request: Request, console: ConsoleState) -> Session:
    session = await auth.page_session(request, console)
    if session.agent.role != "admin":
        raise HTTPException(403, "only admins manage webhooks")
    return session


@router.get("/webhooks")
async def webhooks(request: Request, console: Console) -> Response:
    """Webhook endpoints and recent deliveries (admins)."""
    session = await _admin(request, console)
    endpoints = await console.webhooks.list()
    deliveries = await console.webhooks.deliveries(limit=100)
    return _html(views.webhooks_page(endpoints, deliveries, session))


@router.post("/webhooks/deliveries/{delivery_id}/retry")
async def retry_delivery(request: Request, console: Console, delivery_id: int) -> Response:
    """Make a delivery due now (admins)."""
    session, _ = await auth.action_session(request, console)
    if session.agent.role != "admin":
        raise HTTPException(403, "only admins manage webhooks")
    await console.worker.retry(delivery_id)
    return _back("/console/webhooks")
