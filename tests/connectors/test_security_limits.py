"""Limits that hold under load: rate limits per client IP and per conversation (with
X-Forwarded-For trusted only from a configured proxy), keys compared in constant time,
body and message size limits enforced before anything parses the request.

The app is served by uvicorn on 127.0.0.1 with the settings ``botkit serve`` uses
(uvicorn's defaults: ``X-Forwarded-For`` is honoured only from ``--forwarded-allow-ips``,
127.0.0.1 unless configured). Clients bind other loopback addresses (127.0.0.2, ...) to
be distinct, untrusted clients.
"""

from __future__ import annotations

import asyncio
import hmac
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

pytestmark = pytest.mark.asyncio(loop_scope="session")

PER_IP = 5
PER_CONVERSATION = 3


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def limited(web_bot: Any, kit: Any) -> AsyncIterator[str]:
    from connectors.web.app import create_app

    settings = kit.web_settings(rate_limit_per_minute=PER_IP, conversation_rate_limit_per_minute=PER_CONVERSATION,
                                max_body_bytes=4096)
    app = create_app(web_bot, settings=settings, owns_bot=False)
    try:
        async with kit.serve(app) as url:
            yield url
    finally:
        await app.state.web.aclose()


def _client(url: str, source: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, transport=httpx.AsyncHTTPTransport(local_address=source), timeout=60)


async def test_per_ip_limit_under_load_ignores_untrusted_forwarded_for(limited: str) -> None:
    sources = [f"127.0.0.{n}" for n in range(10, 20)]
    clients = {source: _client(limited, source) for source in sources}
    try:
        async def hit(source: str, n: int) -> tuple[str, int, str | None]:
            response = await clients[source].get("/api/v1/widget/config",
                                                 headers={"X-Forwarded-For": f"203.0.113.{n}"})  # spoofed, rotating
            return source, response.status_code, response.headers.get("retry-after")

        results = await asyncio.gather(*(hit(s, n) for s in sources for n in range(3 * PER_IP)))
    finally:
        for client in clients.values():
            await client.aclose()
    allowed = Counter(source for source, status, _ in results if status == 200)
    limited_ = [r for r in results if r[1] == 429]
    print(f"\nper-IP limit: {len(results)} requests from {len(sources)} addresses with spoofed X-Forwarded-For: "
          f"{sum(allowed.values())} allowed, {len(limited_)} x 429")
    assert all(allowed[s] == PER_IP for s in sources), allowed  # each address its own bucket, XFF ignored
    assert len(limited_) == len(results) - PER_IP * len(sources)
    assert all(retry and int(retry) >= 1 for _, _, retry in limited_)


async def test_forwarded_for_is_trusted_from_the_configured_proxy_only(limited: str) -> None:
    async with _client(limited, "127.0.0.1") as proxy:  # uvicorn's default trusted proxy address
        statuses = [(await proxy.get("/api/v1/widget/config", headers={"X-Forwarded-For": f"198.51.100.{n}"}))
                    .status_code for n in range(PER_IP + 3)]
    assert statuses.count(200) == PER_IP + 3  # a trusted proxy's clients are told apart by X-Forwarded-For
    async with _client(limited, "127.0.0.3") as direct:
        statuses = [(await direct.get("/api/v1/widget/config", headers={"X-Forwarded-For": f"198.51.100.{n}"}))
                    .status_code for n in range(PER_IP + 3)]
    assert statuses.count(200) == PER_IP and statuses.count(429) == 3


async def test_per_conversation_limit_under_load(limited: str, kit: Any) -> None:
    conversations = 8
    async with _client(limited, "127.0.0.1") as http:  # via the "proxy": one address per conversation

        async def conversation(index: int) -> list[int]:
            ip = {"X-Forwarded-For": f"192.0.2.{index}"}
            created = await http.post("/api/v1/conversations", headers={"X-Bot-Key": kit.PUBLIC_KEY, **ip})
            body = created.json()
            headers = {"Authorization": f"Bearer {body['token']}", **ip}
            sends = [http.post(f"/api/v1/conversations/{body['id']}/messages", headers=headers,
                               json={"text": "How do I reset my password?"}) for _ in range(PER_CONVERSATION + 3)]
            return [r.status_code for r in await asyncio.gather(*sends)]

        results = await asyncio.gather(*(conversation(i) for i in range(conversations)))
    flat = [s for r in results for s in r]
    print(f"per-conversation limit: {conversations} conversations x {PER_CONVERSATION + 3} messages at once: "
          f"{dict(Counter(flat))}")
    assert all(r.count(200) == PER_CONVERSATION and r.count(429) == 3 for r in results), results


async def test_keys_and_tokens_are_compared_in_constant_time(live_server: str, kit: Any, api_key: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    async with httpx.AsyncClient(base_url=live_server, timeout=30) as http:
        conversation_id, _ = await kit.new_conversation(http)
        checks = [
            (await http.post("/api/v1/conversations", headers={"X-Bot-Key": kit.PUBLIC_KEY[:-1] + "x"})).status_code,
            (await http.get(f"/api/v1/conversations/{conversation_id}/messages",
                            headers={"Authorization": "Bearer ct_forged-token"})).status_code,
            (await http.get("/api/v1/admin/conversations",  # a real key id with a wrong secret
                            headers={"Authorization": f"Bearer {api_key[:-4]}xxxx"})).status_code,
        ]
    assert checks == [401, 403, 401]
    assert len(calls) >= 4  # public key (twice: the good and the bad), conversation token, API key hash


async def _raw(url: str, request: bytes, *, read_timeout: float = 10.0) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(4096), read_timeout)
    finally:
        writer.close()


async def test_oversized_body_refused_before_it_is_read(limited: str, kit: Any) -> None:
    head = (b"POST /api/v1/conversations HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"X-Bot-Key: " + kit.PUBLIC_KEY.encode() + b"\r\nContent-Length: 50000000\r\n\r\n{\"metadata\": {")
    answer = await _raw(limited, head)  # the 50 MB never come: the answer must not wait for them
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    chunked = (b"POST /api/v1/conversations HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
               b"X-Bot-Key: " + kit.PUBLIC_KEY.encode() + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
               + b"".join(b"1000\r\n" + b" " * 4096 + b"\r\n" for _ in range(3)))
    answer = await _raw(limited, chunked)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


async def test_message_over_the_limit_is_refused_before_the_turn(live_server: str, kit: Any, web_bot: Any) -> None:
    async with httpx.AsyncClient(base_url=live_server, timeout=30) as http:
        conversation_id, headers = await kit.new_conversation(http)
        too_long = "x" * (web_bot.config.limits.max_message_chars + 1)
        response = await http.post(f"/api/v1/conversations/{conversation_id}/messages", headers=headers,
                                   json={"text": too_long})
        assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body", "text"]
        deep = "[" * 3000 + "]" * 3000  # a nesting bomb within the body limit
        bomb = await http.post(f"/api/v1/conversations/{conversation_id}/messages",
                               headers={**headers, "Content-Type": "application/json"},
                               content=('{"text": "hi", "x": ' + deep + "}").encode())
        assert bomb.status_code in (400, 413, 422), bomb.status_code
    assert await web_bot.store.count_messages(conversation_id) == 0  # nothing was recorded



