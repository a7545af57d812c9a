"""The HTTP API through the real app: conversations, messages (JSON and SSE), history,
feedback, tokens, origins, limits, health and the OpenAPI schema."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.asyncio(loop_scope="session")

QUESTION = "How do I reset my password?"


async def test_create_conversation_with_the_public_key(client: httpx.AsyncClient, kit: Any) -> None:
    response = await client.post("/api/v1/conversations", headers={"X-Bot-Key": kit.PUBLIC_KEY})
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "token"} and body["token"].startswith("ct_")


@pytest.mark.parametrize("headers", [{}, {"X-Bot-Key": "pk_wrong"}])
async def test_create_conversation_needs_the_right_key(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    response = await client.post("/api/v1/conversations", headers=headers)
    assert response.status_code == 401


async def test_origins(client: httpx.AsyncClient, kit: Any) -> None:
    key = {"X-Bot-Key": kit.PUBLIC_KEY}
    allowed = await client.post("/api/v1/conversations", headers={**key, "Origin": kit.ALLOWED_ORIGIN})
    assert allowed.status_code == 201
    assert allowed.headers["access-control-allow-origin"] == kit.ALLOWED_ORIGIN
    own = await client.post("/api/v1/conversations", headers={**key, "Origin": "http://testserver"})
    assert own.status_code == 201
    refused = await client.post("/api/v1/conversations", headers={**key, "Origin": "https://evil.example"})
    assert refused.status_code == 403
    assert "access-control-allow-origin" not in refused.headers


async def test_cors_preflight(client: httpx.AsyncClient, kit: Any) -> None:
    response = await client.options("/api/v1/conversations", headers={
        "Origin": kit.ALLOWED_ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-bot-key,authorization"})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == kit.ALLOWED_ORIGIN
    assert "x-bot-key" in response.headers["access-control-allow-headers"].lower()
    denied = await client.options("/api/v1/conversations", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert denied.status_code == 400


async def test_post_message_json(client: httpx.AsyncClient, kit: Any) -> None:
    conversation_id, auth = await kit.new_conversation(client)
    response = await client.post(f"/api/v1/conversations/{conversation_id}/messages",
                                 json={"text": QUESTION}, headers=auth)
    assert response.status_code == 200, response.text
    reply = response.json()
    assert reply["conversation_id"] == conversation_id
    assert reply["text"] and reply["backend"] and not reply["abstained"] and not reply["handoff"]
    assert reply["citations"] and any("reset-password" in c["source"] for c in reply["citations"])
    assert {"number", "source", "title", "snippet", "url"} <= set(reply["citations"][0])


async def test_post_message_sse(client: httpx.AsyncClient, kit: Any) -> None:
    conversation_id, auth = await kit.new_conversation(client)
    async with client.stream("POST", f"/api/v1/conversations/{conversation_id}/messages",
                             json={"text": QUESTION}, headers={**auth, "Accept": "text/event-stream"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        body = (await response.aread()).decode()
    events = kit.parse_sse(body)
    names = [name for name, _ in events]
    assert names[-1] == "done" and "citations" in names and names.count("done") == 1
    assert names.index("citations") < names.index("done")
    deltas = "".join(data["text"] for name, data in events if name == "delta")
    done = events[-1][1]
    assert deltas and done["text"].startswith(deltas.strip()[:20])
    assert done["citations"] and done["message_id"]


async def test_client_message_id_is_idempotent(client: httpx.AsyncClient, kit: Any) -> None:
    conversation_id, auth = await kit.new_conversation(client)
    url = f"/api/v1/conversations/{conversation_id}/messages"
    body = {"text": QUESTION, "client_message_id": "msg-1"}
    first = (await client.post(url, json=body, headers=auth)).json()
    second = (await client.post(url, json=body, headers=auth)).json()
    assert second["duplicate"] and not first["duplicate"]
    assert second["message_id"] == first["message_id"] and second["text"] == first["text"]
    history = (await client.get(url, headers=auth)).json()["messages"]
    assert [m["role"] for m in history] == ["user", "assistant"]


async def test_history_and_feedback(client: httpx.AsyncClient, kit: Any) -> None:
    conversation_id, auth = await kit.new_conversation(client)
    url = f"/api/v1/conversations/{conversation_id}"
    reply = (await client.post(f"{url}/messages", json={"text": QUESTION}, headers=auth)).json()
    history = await client.get(f"{url}/messages", headers=auth)
    assert history.status_code == 200
    messages = history.json()["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[0]["text"] == QUESTION and messages[1]["text"] == reply["text"]
    assert messages[1]["citations"] and messages[1]["id"] == reply["message_id"]
    for rating in ("up", "down", 1, -1):
        response = await client.post(f"{url}/feedback", json={"rating": rating, "message_id": reply["message_id"]},
                                     headers=auth)
        assert response.status_code == 200, response.text
    bad = await client.post(f"{url}/feedback", json={"rating": "meh"}, headers=auth)
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == "rating"
    other_id, other_auth = await kit.new_conversation(client)
    foreign = await client.post(f"/api/v1/conversations/{other_id}/feedback",
                                json={"rating": "up", "message_id": reply["message_id"]}, headers=other_auth)
    assert foreign.status_code == 404


async def test_tokens_are_per_conversation(client: httpx.AsyncClient, kit: Any) -> None:
    first_id, first_auth = await kit.new_conversation(client)
    second_id, _ = await kit.new_conversation(client)
    url = f"/api/v1/conversations/{second_id}/messages"
    assert (await client.get(url, headers=first_auth)).status_code == 403
    assert (await client.post(url, json={"text": "hi"}, headers=first_auth)).status_code == 403
    assert (await client.get(url)).status_code == 401
    assert (await client.get(url, headers={"Authorization": "Bearer ct_forged"})).status_code == 403
    assert (await client.get(f"/api/v1/conversations/{first_id}/messages", headers=first_auth)).status_code == 200


async def test_oversized_body_is_413_before_parsing(client: httpx.AsyncClient, kit: Any) -> None:
    conversation_id, auth = await kit.new_conversation(client)
    url = f"/api/v1/conversations/{conversation_id}/messages"
    big = json.dumps({"text": "x" * 70_000})
    response = await client.post(url, content=big, headers={**auth, "Content-Type": "application/json"})
    assert response.status_code == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it streams
        for _ in range(20):
            yield b" " * 8192

    streamed = await client.post(url, content=chunks(), headers={**auth, "Content-Type": "application/json"})
    assert streamed.status_code == 413


async def test_message_limits_are_422_naming_the_field(client: httpx.AsyncClient, kit: Any, web_app: object) -> None:
    conversation_id, auth = await kit.new_conversation(client)
    url = f"/api/v1/conversations/{conversation_id}/messages"
    limit = web_app.state.web.max_message_chars  # type: ignore[attr-defined]
    too_long = await client.post(url, json={"text": "x" * (limit + 1)}, headers=auth)
    assert too_long.status_code == 422
    assert too_long.json()["detail"][0]["loc"] == ["body", "text"]
    blank = await client.post(url, json={"text": "   "}, headers=auth)
    assert blank.status_code == 422 and blank.json()["detail"][0]["loc"] == ["body", "text"]
    missing = await client.post(url, json={}, headers=auth)
    assert missing.status_code == 422 and missing.json()["detail"][0]["loc"] == ["body", "text"]
    malformed = await client.post(url, content=b'{"text": ', headers={**auth, "Content-Type": "application/json"})
    assert malformed.status_code == 422 and malformed.json()["detail"][0]["type"] == "json_invalid"
    unknown = await client.post(url, json={"text": "hi", "txet": 1}, headers=auth)
    assert unknown.status_code == 422 and unknown.json()["detail"][0]["loc"] == ["body", "txet"]


async def test_health_and_readiness(client: httpx.AsyncClient, kit: Any) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok", "checks": {}}
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"store": True, "knowledge": True}


async def test_openapi_lists_the_endpoints(client: httpx.AsyncClient, kit: Any) -> None:
    schema = (await client.get("/openapi.json")).json()
    paths = schema["paths"]
    for path, method in [
        ("/api/v1/conversations", "post"),
        ("/api/v1/conversations/{conversation_id}/messages", "post"),
        ("/api/v1/conversations/{conversation_id}/messages", "get"),
        ("/api/v1/conversations/{conversation_id}/feedback", "post"),
        ("/api/v1/admin/conversations", "get"),
        ("/api/v1/admin/ingest", "post"),
        ("/v1/chat/completions", "post"),
        ("/v1/models", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
    ]:
        assert method in paths[path], (path, method)
    stream_doc = paths["/api/v1/conversations/{conversation_id}/messages"]["post"]["responses"]["200"]["content"]
    assert "text/event-stream" in stream_doc


async def test_admin_endpoints_need_an_api_key(client: httpx.AsyncClient, kit: Any, api_key: str) -> None:
    assert (await client.get("/api/v1/admin/conversations")).status_code == 401
    wrong = await client.get("/api/v1/admin/conversations", headers={"Authorization": "Bearer bk_nope"})
    assert wrong.status_code == 401
    await kit.new_conversation(client)
    listed = await client.get("/api/v1/admin/conversations?limit=5", headers={"Authorization": f"Bearer {api_key}"})
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert body["limit"] == 5 and 1 <= len(body["conversations"]) <= 5
    assert body["conversations"][0]["channel"] == "web"
    ingest = await client.post("/api/v1/admin/ingest", headers={"Authorization": f"Bearer {api_key}"})
    assert ingest.status_code == 200, ingest.text
    assert ingest.json()["ingested"] is True


async def test_pages_have_a_strict_csp(client: httpx.AsyncClient, kit: Any) -> None:
    page = await client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    html = page.text
    assert '<script src="/widget.js"' in html and f'data-bot-key="{kit.PUBLIC_KEY}"' in html
    assert "<script>" not in html and " on" not in html.split("<body", 1)[1].split(">", 1)[0]
    widget = await client.get("/widget.js")
    assert widget.status_code == 200 and "javascript" in widget.headers["content-type"]
    assert "innerHTML" not in widget.text
    assert (await client.get("/static/demo.css")).status_code == 200
    assert page.headers["x-content-type-options"] == "nosniff"


async def test_app_settles_the_heap_when_asked(web_bot: Any, kit: Any) -> None:
    """``create_app(settle_heap=True)``: once its lifespan has started, the heap is frozen."""
    import gc

    from connectors.web.app import create_app

    app = create_app(web_bot, settings=kit.web_settings(), owns_bot=False, settle_heap=True)
    before = gc.get_freeze_count()
    try:
        async with app.router.lifespan_context(app):
            assert gc.get_freeze_count() > before
    finally:
        gc.unfreeze()
        await app.state.web.aclose()


async def test_widget_config_lists_the_suggested_questions(client: httpx.AsyncClient, web_bot: Any, kit: Any) -> None:
    from connectors.web.app import create_app

    assert (await client.get("/api/v1/widget/config")).json()["suggestions"] == []
    app = create_app(web_bot, settings=kit.web_settings(suggestions=["When are you open?"]), owns_bot=False)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as http:
            config = (await http.get("/api/v1/widget/config")).json()
    finally:
        await app.state.web.aclose()
    assert config["suggestions"] == ["When are you open?"] and config["greeting"]
