"""The agent console over HTTP: sign-in, sessions, CSRF, visibility, the handoff flow, analytics, SSE."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import update

from botkit._tables import agent_sessions
from botkit.agents import AgentDirectory
from botkit.bot import Bot
from connectors.web.console.auth import SESSION_COOKIE, sign

pytestmark = pytest.mark.asyncio(loop_scope="session")
PASSWORD = "a long test password"


@pytest_asyncio.fixture(loop_scope="session")
async def agents(web_bot: Bot) -> AsyncIterator[AgentDirectory]:
    directory = AgentDirectory.from_url(web_bot.config.resolved_database_url)
    try:
        yield directory
    finally:
        await directory.aclose()


@pytest_asyncio.fixture(loop_scope="session")
async def browser_client(web_app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A fresh client with its own cookie jar (one signed-in agent each)."""
    transport = httpx.ASGITransport(app=web_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=60) as http:
        yield http


def _new_client(web_app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=web_app), base_url="http://testserver", timeout=60)


async def _agent(agents: AgentDirectory, role: str = "agent", bots: tuple[str, ...] = ("orbitly",)) -> str:
    email = f"{role}-{uuid.uuid4().hex[:8]}@example.com"
    await agents.create(email, PASSWORD, role=role, bots=bots)  # type: ignore[arg-type]
    return email


async def login(http: httpx.AsyncClient, email: str, password: str = PASSWORD) -> str:
    """Sign in through the form; return the session's CSRF token."""
    form = await http.get("/console/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token, form.text
    response = await http.post("/console/login", data={"csrf": token.group(1), "email": email, "password": password,
                                                       "next": "/console"})
    assert response.status_code == 303 and response.headers["location"] == "/console", response.text
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/console" in cookie
    page = await http.get("/console")
    match = re.search(r'data-csrf="([^"]+)"', page.text)
    assert match, page.text
    return match.group(1)


async def _handed_off(http: httpx.AsyncClient, kit: Any, text: str = "I'd like to talk to a human, please.") -> tuple[str, dict[str, str]]:
    conversation_id, headers = await kit.new_conversation(http)
    reply = await http.post(f"/api/v1/conversations/{conversation_id}/messages", json={"text": text}, headers=headers)
    assert reply.status_code == 200 and reply.json()["handoff"], reply.text
    return conversation_id, headers


async def test_sign_in_is_refused_without_the_right_password_or_form_token(
    browser_client: httpx.AsyncClient, agents: AgentDirectory
) -> None:
    email = await _agent(agents)
    http = browser_client
    unauthenticated = await http.get("/console")
    assert unauthenticated.status_code == 303 and unauthenticated.headers["location"] == "/console/login?next=%2Fconsole"
    page = await http.get("/console/login")
    assert page.headers["cache-control"] == "no-store" and "script-src 'self'" in page.headers["content-security-policy"]
    token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    wrong = await http.post("/console/login", data={"csrf": token, "email": email, "password": "not the password"})
    assert wrong.status_code == 401 and "Wrong email or password" in wrong.text and SESSION_COOKIE not in wrong.cookies
    unknown = await http.post("/console/login", data={"csrf": token, "email": "nobody@example.com", "password": PASSWORD})
    assert unknown.status_code == 401
    forged = await http.post("/console/login", data={"csrf": "forged", "email": email, "password": PASSWORD})
    assert forged.status_code == 403
    redirect = await http.post("/console/login", data={"csrf": token, "email": email, "password": PASSWORD,
                                                       "next": "https://evil.example/"})
    assert redirect.status_code == 303 and redirect.headers["location"] == "/console"  # no open redirect


async def test_expired_and_forged_sessions_are_refused(web_app: Any, agents: AgentDirectory) -> None:
    email = await _agent(agents)
    agent = await agents.find(email)
    assert agent is not None
    key = web_app.state.console.cookie_key
    token, _ = await agents.start_session(agent, hours=1)
    async with _new_client(web_app) as http:
        http.cookies.set(SESSION_COOKIE, sign(key, token), domain="testserver.local", path="/console")
        assert (await http.get("/console")).status_code == 200
        async with agents.engine.begin() as conn:  # the session's time runs out
            past = datetime.now(timezone.utc) - timedelta(seconds=1)
            await conn.execute(update(agent_sessions).where(agent_sessions.c.agent_id == agent.id).values(expires_at=past))
        expired = await http.get("/console")
        assert expired.status_code == 303 and expired.headers["location"].startswith("/console/login")
        assert (await http.get("/console/events")).status_code == 401
    async with _new_client(web_app) as http:
        token, _ = await agents.start_session(agent, hours=1)
        http.cookies.set(SESSION_COOKIE, token + ".forged-signature", domain="testserver.local", path="/console")
        assert (await http.get("/console")).status_code == 303


async def test_csrf_is_checked_on_every_post(web_app: Any, agents: AgentDirectory, kit: Any) -> None:
    email = await _agent(agents)
    async with _new_client(web_app) as http:
        csrf = await login(http, email)
        conversation_id, _ = await _handed_off(http, kit)
        url = f"/console/conversations/{conversation_id}/claim"
        assert (await http.post(url, data={})).status_code == 403
        assert (await http.post(url, data={"csrf": "wrong"})).status_code == 403
        cross = await http.post(url, data={"csrf": csrf}, headers={"Origin": "https://evil.example"})
        assert cross.status_code == 403
        assert (await http.post("/console/logout", data={})).status_code == 403
        assert (await http.post(url, data={"csrf": csrf})).status_code == 303
        assert (await http.post(url, headers={"X-CSRF-Token": csrf})).status_code == 303  # header form, idempotent
    async with _new_client(web_app) as anonymous:
        assert (await anonymous.post(url, data={"csrf": csrf})).status_code == 401


async def test_agents_only_see_their_bots(web_app: Any, web_bot: Bot, agents: AgentDirectory) -> None:
    other = await web_bot.store.create_conversation(bot="another-bot", channel="web")
    await web_bot.store.add_user_message(other.id, "secret question of another bot")
    await web_bot.store.set_state(other.id, "handoff")
    outsider = await _agent(agents, bots=("another-bot-2",))
    mine = await _agent(agents)
    async with _new_client(web_app) as http:
        csrf = await login(http, mine)
        assert "secret question" not in (await http.get("/console")).text
        assert (await http.get(f"/console/conversations/{other.id}")).status_code == 404
        assert (await http.post(f"/console/conversations/{other.id}/claim", data={"csrf": csrf})).status_code == 404
        assert (await http.post(f"/console/conversations/{other.id}/notes", data={"csrf": csrf, "text": "x"})).status_code == 404
        assert (await http.get(f"/console/events?conversation={other.id}")).status_code == 404
        assert (await http.get("/console/webhooks")).status_code == 403  # admins only
    async with _new_client(web_app) as http:
        await login(http, outsider)
        assert (await http.get("/console/analytics")).status_code == 403


async def test_handoff_flow_over_http(web_app: Any, agents: AgentDirectory, kit: Any) -> None:
    first, second = await _agent(agents), await _agent(agents)
    async with _new_client(web_app) as visitor, _new_client(web_app) as ana, _new_client(web_app) as bo:
        conversation_id, headers = await _handed_off(visitor, kit, "Can I pay by bank transfer? I want to talk to a human")
        csrf_a, csrf_b = await login(ana, first), await login(bo, second)
        queue = await ana.get("/console")
        assert f"/console/conversations/{conversation_id}" in queue.text and "Can I pay by bank transfer?" in queue.text
        assert "asked for a person" in queue.text
        base = f"/console/conversations/{conversation_id}"
        claims = await asyncio.gather(ana.post(base + "/claim", data={"csrf": csrf_a}),
                                      bo.post(base + "/claim", data={"csrf": csrf_b}))
        assert sorted(r.status_code for r in claims) == [303, 409]
        winner, loser, csrf_w = (ana, bo, csrf_a) if claims[0].status_code == 303 else (bo, ana, csrf_b)
        assert "already claimed" in (claims[1] if winner is ana else claims[0]).text
        assert (await loser.post(base + "/reply", data={"csrf": csrf_b if loser is bo else csrf_a,
                                                         "text": "me too"})).status_code == 409
        await visitor.post(f"/api/v1/conversations/{conversation_id}/messages", headers=headers,
                           json={"text": "You can also email me at jane.doe@example.com"})  # queued for the person
        sent = await winner.post(base + "/reply", data={"csrf": csrf_w, "text": "Hi! Yes, bank transfers work <b>too</b>."})
        assert sent.status_code == 303
        noted = await winner.post(base + "/notes", data={"csrf": csrf_w, "text": "VIP customer, internal only"})
        assert noted.status_code == 303
        page = await winner.get(base)
        assert "bank transfers work &lt;b&gt;too&lt;/b&gt;" in page.text and "VIP customer" in page.text
        assert "claimed by you" in page.text
        assert "visitor's email: jane.doe@example.com" in page.text

        history = (await visitor.get(f"/api/v1/conversations/{conversation_id}/messages", headers=headers)).json()
        roles = [m["role"] for m in history["messages"]]
        assert roles[-1] == "agent" and "bank transfers work" in history["messages"][-1]["text"]
        assert all("VIP" not in m["text"] for m in history["messages"])  # notes never reach the visitor

        assert (await winner.post(base + "/handback", data={"csrf": csrf_w})).status_code == 303
        answer = await visitor.post(f"/api/v1/conversations/{conversation_id}/messages",
                                    json={"text": "How do I reset my password?"}, headers=headers)
        body = answer.json()
        assert not body["handoff"] and body["citations"] and "password" in body["text"].lower()
        assert f"/console/conversations/{conversation_id}" not in (await ana.get("/console")).text


async def test_close_analytics_and_webhooks_pages(web_app: Any, agents: AgentDirectory, kit: Any) -> None:
    admin = await _agent(agents, role="admin", bots=())
    async with _new_client(web_app) as http:
        csrf = await login(http, admin)
        conversation_id, _ = await _handed_off(http, kit, "Do you offer a discount for charities? talk to a human")
        base = f"/console/conversations/{conversation_id}"
        assert (await http.post(base + "/claim", data={"csrf": csrf})).status_code == 303
        closed = await http.post(base + "/close", data={"csrf": csrf, "resolution": "answered by email"})
        assert closed.status_code == 303 and closed.headers["location"] == "/console"
        assert "resolution: answered by email" in (await http.get(base)).text
        analytics = await http.get("/console/analytics")
        assert analytics.status_code == 200 and analytics.text.count("<svg") >= 3
        assert "Do you offer a discount for charities?" in analytics.text  # a knowledge gap
        csv = await http.get("/console/analytics/gaps.csv")
        assert csv.status_code == 200 and csv.text.startswith("rank,size,label")
        assert "attachment" in csv.headers["content-disposition"]
        assert (await http.get("/console/report.css")).status_code == 200
        assert (await http.get("/console/static/console.js")).status_code == 200
        hooks = await http.get("/console/webhooks")
        assert hooks.status_code == 200 and "Recent deliveries" in hooks.text
        assert (await http.post("/console/logout", data={"csrf": csrf})).status_code == 303
        assert (await http.get("/console")).status_code == 303


async def test_console_events_stream(live_server: str, agents: AgentDirectory, kit: Any) -> None:
    email = await _agent(agents)
    async with httpx.AsyncClient(base_url=live_server, timeout=30) as http:
        await login(http, email)
        async with http.stream("GET", "/console/events") as events:
            assert events.headers["content-type"].startswith("text/event-stream")
            await _handed_off(http, kit)  # a new conversation joins the queue
            seen = ""
            async for chunk in events.aiter_text():
                seen += chunk
                if "event: changed" in seen:
                    break
        assert "event: changed" in seen


async def test_sign_in_attempts_are_limited_per_address(web_app: Any, agents: AgentDirectory) -> None:
    from connectors.web.security import RateLimiter

    email = await _agent(agents)
    console = web_app.state.console
    shared, console.login_limiter = console.login_limiter, RateLimiter(2)
    try:
        async with _new_client(web_app) as http:
            for _ in range(2):  # within the limit: a wrong password is a 401 with the form again
                token = re.search(r'name="csrf" value="([^"]+)"', (await http.get("/console/login")).text)
                assert token is not None
                wrong = await http.post("/console/login", data={"csrf": token.group(1), "email": email, "password": "no"})
                assert wrong.status_code == 401
            token = re.search(r'name="csrf" value="([^"]+)"', (await http.get("/console/login")).text)
            assert token is not None
            limited = await http.post("/console/login", data={"csrf": token.group(1), "email": email, "password": PASSWORD})
            assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
            assert SESSION_COOKIE not in limited.cookies  # even the right password waits
    finally:
        console.login_limiter = shared
