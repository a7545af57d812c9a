"""Security primitives of the web connector.

- **Conversation tokens** are HMAC-SHA256 signatures of the conversation id under a server
  secret: unguessable, checked in constant time, and stateless (no table, any worker can
  verify them). The secret is ``web.secret`` or ``<data_dir>/secret.key``, created on first
  use; several machines serving one bot must share ``web.secret``.
- **Origins**: the public bot key only works from ``web.allowed_origins`` and the server's
  own origin. A request *without* an ``Origin`` header (curl, server-to-server) is allowed:
  browsers always send ``Origin`` on cross-origin POSTs, so the check stops other web sites
  from embedding the bot, while the public key was never a secret to begin with.
- **Rate limits** are in-memory token buckets, per client IP and per conversation. They are
  per worker process: with N workers the effective limit is up to N times the setting.
- **Body size** is limited by an ASGI middleware before anything parses the body.
- **Security headers**: a strict CSP (no inline script) on every response except the
  interactive API docs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import os
import secrets
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from botkit.config import BotConfig

SECRET_FILE = "secret.key"
TOKEN_PREFIX = "ct_"
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'"
)
API_CSP = "default-src 'none'; frame-ancestors 'none'"
_DOCS_PATHS = ("/docs", "/redoc")


def load_secret(config: BotConfig) -> bytes:
    """The server secret: ``web.secret``, else ``<data_dir>/secret.key`` (created on first use)."""
    if config.web.secret:
        return config.web.secret.encode("utf-8")
    path = config.data_path / SECRET_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_secret(path)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(secrets.token_urlsafe(48))
    return _read_secret(path)


def _read_secret(path: Path) -> bytes:
    for _ in range(50):  # another worker may be writing it right now
        value = path.read_text(encoding="ascii").strip()
        if value:
            return value.encode("ascii")
        time.sleep(0.01)
    raise RuntimeError(f"{path} is empty; delete it to create a new secret")


def public_key(config: BotConfig, secret: bytes) -> str:
    """The bot's public key: ``web.public_key``, else one derived from the server secret."""
    if config.web.public_key:
        return config.web.public_key
    digest = hmac.new(secret, b"botkit public key", hashlib.sha256).digest()
    return "pk_" + base64.urlsafe_b64encode(digest[:18]).decode("ascii")


class ConversationTokens:
    """Issues and checks per-conversation bearer tokens (HMAC-signed conversation ids)."""

    def __init__(self, secret: bytes) -> None:
        self._key = hmac.new(secret, b"botkit conversation tokens", hashlib.sha256).digest()

    def issue(self, conversation_id: str) -> str:
        """The token that grants access to ``conversation_id``."""
        mac = hmac.new(self._key, conversation_id.encode("utf-8"), hashlib.sha256).digest()
        return TOKEN_PREFIX + base64.urlsafe_b64encode(mac).decode("ascii").rstrip("=")

    def verify(self, conversation_id: str, token: str) -> bool:
        """True when ``token`` was issued for ``conversation_id`` (constant-time comparison)."""
        return hmac.compare_digest(self.issue(conversation_id).encode(), token.encode("utf-8", "replace"))


def check_key(expected: str, given: str | None) -> bool:
    """Constant-time comparison of a presented key with the expected one."""
    return given is not None and hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace"))


def normalize_origin(value: str) -> str:
    """``scheme://host[:port]`` in lower case, default ports dropped."""
    parts = urlsplit(value.strip())
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    port = parts.port
    if port is None or (scheme, port) in {("http", 80), ("https", 443)}:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


class OriginPolicy:
    """Which browser origins may use the public key: the configured ones and the server's own."""

    def __init__(self, allowed: list[str]) -> None:
        self.allow_all = "*" in allowed
        self.allowed = {normalize_origin(o) for o in allowed if o != "*"}

    def allows(self, origin: str | None, own_origin: str) -> bool:
        """True for no ``Origin`` header, the server's own origin, or a configured one."""
        if origin is None or self.allow_all:
            return True
        try:
            candidate = normalize_origin(origin)
        except ValueError:
            return False
        return candidate == normalize_origin(own_origin) or candidate in self.allowed


class RateLimiter:
    """Token buckets keyed by a string (client IP, conversation id), bounded in memory.

    ``per_minute`` tokens refill evenly over a minute and the bucket holds at most
    ``per_minute`` (the burst). ``per_minute == 0`` disables the limit.
    """

    def __init__(self, per_minute: int, *, max_keys: int = 50_000) -> None:
        self.per_minute = per_minute
        self._rate = per_minute / 60.0
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def hit(self, key: str, *, now: float | None = None) -> float | None:
        """Take one token for ``key``; return ``None`` if allowed, else seconds to wait."""
        if self.per_minute <= 0:
            return None
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.pop(key, (float(self.per_minute), now))
        tokens = min(float(self.per_minute), tokens + (now - last) * self._rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        return None if allowed else (1.0 - tokens) / self._rate

    @staticmethod
    def retry_after(seconds: float) -> str:
        """A ``Retry-After`` header value (whole seconds, at least 1)."""
        return str(max(1, math.ceil(seconds)))


class BodyTooLarge(HTTPException):
    """Raised inside the app when a streamed request body passes the limit.

    An ``HTTPException`` (413), so frameworks that turn body-reading errors into 400s
    (FastAPI does) let it through to the exception handlers.
    """

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body larger than {max_bytes} bytes")


class BodySizeLimitMiddleware:
    """Answers 413 for bodies over ``max_bytes`` before any handler parses them.

    A ``Content-Length`` over the limit is refused at once; otherwise the bytes received
    are counted as they stream in (chunked uploads, lying headers).
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                if not value.isdigit() or int(value) > self.max_bytes:
                    await _send_413(send, self.max_bytes)
                    return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await _send_413(send, self.max_bytes)


async def _send_413(send: Send, max_bytes: int) -> None:
    body = b'{"detail":"request body larger than ' + str(max_bytes).encode() + b' bytes"}'
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                        (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": body})


class SecurityHeadersMiddleware:
    """Adds CSP, ``nosniff`` and a referrer policy to every response (the docs pages excepted)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(_DOCS_PATHS):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: list[Any] = list(message.get("headers", []))
                content_type = next((v for k, v in headers if k == b"content-type"), b"")
                csp = PAGE_CSP if content_type.startswith(b"text/html") else API_CSP
                names = {k for k, _ in headers}
                for key, value in (
                    (b"content-security-policy", csp.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"strict-origin-when-cross-origin"),
                ):
                    if key not in names:
                        headers.append((key, value))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)
