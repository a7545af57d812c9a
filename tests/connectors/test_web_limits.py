"""Rate limits and the mapping of botkit errors to HTTP statuses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from botkit.errors import BackendError, ConversationLocked, InvalidMessage, StoreUnavailable

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _client(web_bot: Any, kit: Any, **settings: Any) -> httpx.AsyncClient:
    from connectors.web.app import create_app

    app = create_app(web_bot, settings=kit.web_settings(**settings), owns_bot=False)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


async def test_rate_limit_per_client_ip(web_bot: Any, kit: Any) -> None:
    async with await _client(web_bot, kit, rate_limit_per_minute=3) as client:
        statuses = [(await client.post("/api/v1/conversations", headers={"X-Bot-Key": kit.PUBLIC_KEY})).status_code
                    for _ in range(4)]
        assert statuses == [201, 201, 201, 429]
        limited = await client.post("/api/v1/conversations", headers={"X-Bot-Key": kit.PUBLIC_KEY})
        assert limited.status_code == 429 and 1 <= int(limited.headers["retry-after"]) <= 20
        assert (await client.get("/healthz")).status_code == 200  # probes are not limited


async def test_rate_limit_per_conversation(web_bot: Any, kit: Any) -> None:
    async with await _client(web_bot, kit, conversation_rate_limit_per_minute=2) as client:
        conversation_id, auth = await kit.new_conversation(client)
        url = f"/api/v1/conversations/{conversation_id}/messages"
        statuses = [(await client.post(url, json={"text": "What are your opening hours?"}, headers=auth)).status_code
                    for _ in range(3)]
        assert statuses == [200, 200, 429]
        other_id, other_auth = await kit.new_conversation(client)
        other = await client.post(f"/api/v1/conversations/{other_id}/messages", json={"text": "hello"},
                                  headers=other_auth)
        assert other.status_code == 200


@pytest.mark.parametrize(
    ("error", "status", "retry_after"),
    [
        (StoreUnavailable("db down"), 503, True),
        (ConversationLocked("busy"), 409, True),
        (BackendError("model exploded: secret detail"), 502, False),
        (InvalidMessage("text contains control characters"), 422, False),
    ],
)
async def test_botkit_errors_map_to_statuses(
    client: httpx.AsyncClient, kit: Any, web_bot: Any, monkeypatch: pytest.MonkeyPatch,
    error: Exception, status: int, retry_after: bool,
) -> None:
    conversation_id, auth = await kit.new_conversation(client)

    async def failing(_incoming: Any) -> Any:
        raise error

    async def failing_stream(_incoming: Any) -> AsyncIterator[Any]:
        raise error
        yield  # pragma: no cover

    monkeypatch.setattr(web_bot, "handle", failing)
    monkeypatch.setattr(web_bot, "handle_stream", failing_stream)
    url = f"/api/v1/conversations/{conversation_id}/messages"
    for accept in ("application/json", "text/event-stream"):
        response = await client.post(url, json={"text": "hi"}, headers={**auth, "Accept": accept})
        assert response.status_code == status, (accept, response.text)
        assert ("retry-after" in response.headers) is retry_after
        assert "secret detail" not in response.text
        if status == 422:
            assert response.json()["detail"][0]["loc"] == ["body", "text"]


async def test_error_after_the_stream_started_is_an_error_event(
    client: httpx.AsyncClient, kit: Any, web_bot: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botkit.messages import ReplyDelta

    conversation_id, auth = await kit.new_conversation(client)

    async def half_stream(_incoming: Any) -> AsyncIterator[Any]:
        yield ReplyDelta("Partial ")
        raise StoreUnavailable("lost the database mid-turn")

    monkeypatch.setattr(web_bot, "handle_stream", half_stream)
    response = await client.post(f"/api/v1/conversations/{conversation_id}/messages", json={"text": "hi"},
                                 headers={**auth, "Accept": "text/event-stream"})
    assert response.status_code == 200
    events = kit.parse_sse(response.text)
    assert events[0] == ("delta", {"text": "Partial "})
    assert events[-1][0] == "error" and events[-1][1]["error"]["type"] == "store_unavailable"
    assert "mid-turn" not in response.text
