"""A local stand-in for Slack's Web API, and helpers to send Slack-signed requests.

It speaks real HTTP on ``127.0.0.1`` (a free port) from a background thread; point the
connector at it with ``slack.api_url = stub.api_url``. Every call is recorded and
answered the way Slack answers it::

    with SlackStub() as stub:
        ...  # the connector calls auth.test, chat.postMessage, chat.update, ...
        await stub.wait_for(lambda calls: any(c.method == "chat.update" for c in calls))
        stub.calls_to("chat.postMessage")

Methods with realistic answers: ``auth.test``, ``chat.postMessage``, ``chat.update``,
``chat.delete``, ``chat.getPermalink``, ``chat.postEphemeral``; anything else answers
``{"ok": true}``. A wrong bearer token gets ``invalid_auth``, as from Slack.
``fail(method, error)`` makes the next call of ``method`` fail with that error.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

BOT_USER_ID = "UBOT0001"
BOT_ID = "BBOT0001"
TEAM_ID = "T0000001"
TOKEN = "xoxb-test-token"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


@dataclass
class SlackCall:
    """One Web API call: the method, its arguments (JSON body, form or query) and when."""

    method: str
    args: dict[str, Any]
    token: str | None
    at: float = field(default_factory=time.monotonic)
    response: dict[str, Any] = field(default_factory=dict)


class SlackStub:
    """The stub server (a context manager); ``calls`` holds every call, in order."""

    def __init__(self, *, token: str = TOKEN, socket_url: str | None = None) -> None:
        self.token = token
        self.socket_url = socket_url  # what apps.connections.open answers (a SocketModeStub's url)
        self.calls: list[SlackCall] = []
        self._lock = threading.Lock()
        self._ts = itertools.count(1)
        self._failures: dict[str, list[str]] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="slack-stub", daemon=True)

    @property
    def api_url(self) -> str:
        """The Web API base URL (``slack.api_url``)."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/api/"

    def __enter__(self) -> SlackStub:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail(self, method: str, error: str = "internal_error") -> None:
        """Make the next call of ``method`` answer ``{"ok": false, "error": error}``."""
        with self._lock:
            self._failures.setdefault(method, []).append(error)

    def calls_to(self, method: str) -> list[SlackCall]:
        """The calls of one method so far."""
        with self._lock:
            return [call for call in self.calls if call.method == method]

    def snapshot(self) -> list[SlackCall]:
        """A copy of the calls so far."""
        with self._lock:
            return list(self.calls)

    def reset(self) -> None:
        """Forget the calls so far."""
        with self._lock:
            self.calls.clear()

    async def wait_for(self, predicate: Callable[[list[SlackCall]], bool], timeout: float = 10.0) -> list[SlackCall]:
        """Wait (without blocking the loop) until ``predicate(calls)``; the calls, or AssertionError."""
        deadline = time.monotonic() + timeout
        while not predicate(calls := self.snapshot()):
            if time.monotonic() > deadline:
                raise AssertionError(f"Slack stub: not met in {timeout} s; calls: {[c.method for c in calls]}")
            await asyncio.sleep(0.02)
        return calls

    def wait_for_sync(self, predicate: Callable[[list[SlackCall]], bool], timeout: float = 10.0) -> list[SlackCall]:
        """:meth:`wait_for` for code without an event loop."""
        deadline = time.monotonic() + timeout
        while not predicate(calls := self.snapshot()):
            if time.monotonic() > deadline:
                raise AssertionError(f"Slack stub: not met in {timeout} s; calls: {[c.method for c in calls]}")
            time.sleep(0.02)
        return calls

    def answer(self, method: str, args: Mapping[str, Any], token: str | None) -> dict[str, Any]:
        """Record a call and Slack's answer to it (``SlackCall.response``)."""
        call = SlackCall(method, dict(args), token)
        with self._lock:
            failures = self._failures.get(method)
            error = failures.pop(0) if failures else None
            ts = f"{1_700_000_000 + next(self._ts)}.000100"
        call.response = self._response(method, args, token, error, ts)
        with self._lock:
            self.calls.append(call)
        return call.response

    def _response(self, method: str, args: Mapping[str, Any], token: str | None, error: str | None,
                  ts: str) -> dict[str, Any]:
        if method == "apps.connections.open":  # Socket Mode: authenticated by the app-level token
            ok = bool(token and token.startswith("xapp-") and self.socket_url)
            return {"ok": True, "url": self.socket_url} if ok else {"ok": False, "error": "invalid_auth"}
        if token != self.token:
            return {"ok": False, "error": "invalid_auth"}
        if error:
            return {"ok": False, "error": error}
        channel = args.get("channel")
        if method == "auth.test":
            return {"ok": True, "url": "https://example.slack.com/", "team": "Example", "user": "botkit",
                    "team_id": TEAM_ID, "user_id": BOT_USER_ID, "bot_id": BOT_ID, "is_enterprise_install": False}
        if method == "chat.postMessage":
            message = {"type": "message", "text": args.get("text"), "user": BOT_USER_ID, "bot_id": BOT_ID, "ts": ts}
            return {"ok": True, "channel": channel, "ts": ts, "message": message}
        if method == "chat.update":
            return {"ok": True, "channel": channel, "ts": args.get("ts"), "text": args.get("text")}
        if method == "chat.delete":
            return {"ok": True, "channel": channel, "ts": args.get("ts")}
        if method == "chat.getPermalink":
            stamp = str(args.get("message_ts", "")).replace(".", "")
            return {"ok": True, "channel": channel, "permalink": f"https://example.slack.com/archives/{channel}/p{stamp}"}
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": ts}
        return {"ok": True}


def _handler(stub: SlackStub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # no delayed-ACK stall between headers and body

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _serve(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            if not url.path.startswith("/api/"):
                self.send_error(404)
                return
            args: dict[str, Any] = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if raw:
                if (self.headers.get("Content-Type") or "").startswith("application/json"):
                    args.update(json.loads(raw))
                else:
                    args.update({k: v[-1] for k, v in urllib.parse.parse_qs(raw.decode()).items()})
            auth = self.headers.get("Authorization") or ""
            token = auth[7:] if auth.startswith("Bearer ") else args.pop("token", None)
            body = json.dumps(stub.answer(url.path[5:], args, token)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _serve

    return Handler


class SocketModeStub:
    """Slack's Socket Mode end: a WebSocket server (aiohttp, in its own thread and loop).

    It greets each connection with ``hello``, sends envelopes with :meth:`send` and
    records the envelope ids the app acknowledges in ``acks``::

        with SocketModeStub() as socket, SlackStub(socket_url=socket.url) as stub:
            socket.wait_connected()
            socket.send({"envelope_id": "e1", "type": "events_api", "payload": {...}})
    """

    def __init__(self) -> None:
        self.acks: list[str] = []
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="slack-socket-stub", daemon=True)
        self._sockets: list[Any] = []
        self._connected = threading.Event()
        self._runner: Any = None

    def __enter__(self) -> SocketModeStub:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc_info: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _start(self) -> None:
        from aiohttp import web

        async def link(request: web.Request) -> web.WebSocketResponse:
            socket = web.WebSocketResponse(autoping=True)
            await socket.prepare(request)
            self._sockets.append(socket)
            await socket.send_json({"type": "hello", "num_connections": 1, "debug_info": {"host": "stub"}})
            self._connected.set()
            async for message in socket:
                if message.type == web.WSMsgType.TEXT:
                    envelope_id = json.loads(message.data).get("envelope_id")
                    if envelope_id:
                        self.acks.append(envelope_id)
            return socket

        app = web.Application()
        app.router.add_get("/link", link)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"ws://127.0.0.1:{port}/link"

    async def _stop(self) -> None:
        for socket in self._sockets:
            await socket.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def wait_connected(self, timeout: float = 10.0) -> None:
        """Block until an app has connected."""
        assert self._connected.wait(timeout), "no Socket Mode connection"

    def send(self, envelope: Mapping[str, Any]) -> None:
        """Send an envelope to the most recent connection."""
        asyncio.run_coroutine_threadsafe(self._sockets[-1].send_json(dict(envelope)), self._loop).result(5)


# -- requests from Slack -------------------------------------------------------------------

def signed_headers(body: str | bytes, *, secret: str = SIGNING_SECRET, timestamp: int | None = None,
                   content_type: str = "application/json") -> dict[str, str]:
    """The headers Slack sends with ``body``: ``X-Slack-Request-Timestamp`` and ``X-Slack-Signature``."""
    raw = body.encode() if isinstance(body, str) else body
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), b"v0:" + stamp.encode() + b":" + raw, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={digest}", "Content-Type": content_type}


def event_body(event: Mapping[str, Any], *, event_id: str, team_id: str = TEAM_ID) -> str:
    """An Events API ``event_callback`` envelope, as JSON."""
    envelope = {
        "token": "legacy-verification-token", "team_id": team_id, "api_app_id": "A0000001", "type": "event_callback",
        "event": dict(event), "event_id": event_id, "event_time": int(time.time()),
        "authorizations": [{"team_id": team_id, "user_id": BOT_USER_ID, "is_bot": True}],
    }
    return json.dumps(envelope)


def interaction_body(payload: Mapping[str, Any]) -> str:
    """An interactivity request body (``payload=<json>``, form-encoded)."""
    return urllib.parse.urlencode({"payload": json.dumps(payload)})
