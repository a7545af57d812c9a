"""A local OpenAI-compatible HTTP server for tests and benchmarks.

It speaks real HTTP on ``127.0.0.1`` (a free port), from a background thread, so the
official ``openai`` client (or anything else) talks to it exactly as to a vLLM/Ollama
server. Each request to ``/v1/chat/completions`` takes the next scripted
:class:`StubReply` (or the default one) and every request is recorded::

    with OpenAIStub() as stub:
        stub.enqueue(StubReply.rate_limited(retry_after="1"), StubReply(text="Hi!"))
        client = AsyncOpenAI(base_url=stub.base_url, api_key="test")
        ...
        assert len(stub.requests) == 2

Endpoints: ``POST /v1/chat/completions`` (JSON or SSE when ``"stream": true``; a usage
chunk is sent when ``stream_options.include_usage`` is set) and ``GET /v1/models``.
Faults: HTTP errors with OpenAI-style bodies and headers (429 + ``Retry-After``, 500,
``insufficient_quota``), a delay before answering, a pause between chunks, a hang after
some chunks, and an abrupt connection close before or during a reply.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class StubReply:
    """What the stub does for one chat-completions request.

    ``status`` other than 200 sends an OpenAI error body (``error_message``,
    ``error_type``, ``error_code``) with ``headers``. For streams, ``chunks`` splits
    ``text`` (default: word by word), ``chunk_delay_s`` passes between chunks,
    ``hang_after_chunks`` stops sending after that many chunks for ``hang_s`` (or until
    the server stops), ``drop_after_chunks`` closes the socket after that many chunks
    (0: before any response bytes; also applies to non-streaming requests, where any
    value closes the socket without a response). ``usage_in_stream=False`` plays a server
    that ignores ``stream_options.include_usage``.
    """

    text: str = "Hello from the stub."
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    error_message: str | None = None
    error_type: str | None = None
    error_code: str | None = None
    delay_s: float = 0.0
    chunks: list[str] | None = None
    chunk_delay_s: float = 0.0
    hang_after_chunks: int | None = None
    hang_s: float = 60.0
    drop_after_chunks: int | None = None
    usage_in_stream: bool = True
    prompt_tokens: int = 11
    completion_tokens: int | None = None
    finish_reason: str = "stop"

    @classmethod
    def rate_limited(cls, retry_after: str | None = "1", message: str = "Rate limit reached, slow down") -> StubReply:
        """A 429 ``rate_limit_exceeded`` with an optional ``Retry-After`` header."""
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        return cls(status=429, headers=headers, error_message=message, error_type="requests", error_code="rate_limit_exceeded")

    @classmethod
    def insufficient_quota(cls) -> StubReply:
        """A 429 ``insufficient_quota``: retrying cannot help."""
        return cls(
            status=429,
            error_message="You exceeded your current quota, please check your plan and billing details.",
            error_type="insufficient_quota",
            error_code="insufficient_quota",
        )

    @classmethod
    def server_error(
        cls, status: int = 500, message: str = "The server had an error while processing your request."
    ) -> StubReply:
        """A 5xx ``server_error``."""
        return cls(status=status, error_message=message, error_type="server_error")

    @classmethod
    def hang(cls, after_chunks: int = 1, text: str = "This reply never finishes properly.", hang_s: float = 60.0) -> StubReply:
        """Stream ``after_chunks`` chunks, then go silent."""
        return cls(text=text, hang_after_chunks=after_chunks, hang_s=hang_s)

    @classmethod
    def drop(cls, after_chunks: int = 0, text: str = "This reply is cut off.") -> StubReply:
        """Close the connection abruptly after ``after_chunks`` chunks."""
        return cls(text=text, drop_after_chunks=after_chunks)

    def split(self) -> list[str]:
        """The streamed pieces of ``text``."""
        if self.chunks is not None:
            return list(self.chunks)
        words = self.text.split(" ")
        return [w if i == len(words) - 1 else w + " " for i, w in enumerate(words)]


@dataclass(frozen=True)
class RecordedRequest:
    """One request the stub received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    received_at: float  # time.monotonic()


class OpenAIStub:
    """The server. Use as a context manager, or call :meth:`start` and :meth:`stop`."""

    def __init__(self, *, default: StubReply | None = None, models: tuple[str, ...] = ("stub-model",)) -> None:
        self.default = default or StubReply()
        self.models = models
        self.requests: list[RecordedRequest] = []
        self._queue: deque[StubReply] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- control --------------------------------------------------------------------
    def start(self) -> OpenAIStub:
        """Bind a free port on 127.0.0.1 and serve from a daemon thread."""
        stub = self

        class Handler(_Handler):
            owner = stub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="openai-stub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; hanging replies are released."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> OpenAIStub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: what to give a client as ``base_url``."""
        assert self._server is not None, "start the stub first"
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def enqueue(self, *replies: StubReply) -> None:
        """Script the next chat-completions replies, in order."""
        with self._lock:
            self._queue.extend(replies)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        """Only the chat-completions requests."""
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def _next(self) -> StubReply:
        with self._lock:
            return self._queue.popleft() if self._queue else self.default

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)


class _Handler(BaseHTTPRequestHandler):
    owner: OpenAIStub
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: with Nagle's algorithm on, the body waits
    # for the client's delayed ACK (about 40 ms a response on Linux), as no real server does.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    # -- routes -----------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802
        self._record(None)
        if self.path.rstrip("/").endswith("/models"):
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "stub"} for m in self.owner.models]
            self._json(200, {"object": "list", "data": data})
        else:
            self._json(404, _error("not found", "invalid_request_error", None))

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            body = None
        self._record(body)
        if not self.path.rstrip("/").endswith("/chat/completions") or not isinstance(body, dict):
            self._json(404 if body is not None else 400, _error("unsupported request", "invalid_request_error", None))
            return
        reply = self.owner._next()
        if reply.delay_s and self.owner._stopping.wait(reply.delay_s):
            return
        if reply.drop_after_chunks is not None and (not body.get("stream") or reply.drop_after_chunks == 0):
            self._drop()
            return
        if reply.status != 200:
            message = reply.error_message or f"stub error {reply.status}"
            self._json(reply.status, _error(message, reply.error_type, reply.error_code), reply.headers)
            return
        model = str(body.get("model", "stub-model"))
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            self._stream(reply, model, include_usage)
        else:
            self._json(200, _completion(reply, model), reply.headers)

    # -- writing ----------------------------------------------------------------------
    def _record(self, body: Any) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.owner._record(RecordedRequest(self.command, self.path, headers, body, time.monotonic()))

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _event(self, payload: Any) -> None:
        self._chunk(b"data: " + (payload if isinstance(payload, bytes) else json.dumps(payload).encode()) + b"\n\n")

    def _stream(self, reply: StubReply, model: str, include_usage: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        base = {"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
        self._event({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]})
        for index, piece in enumerate(reply.split()):
            if reply.hang_after_chunks is not None and index >= reply.hang_after_chunks:
                self.owner._stopping.wait(reply.hang_s)
                self.close_connection = True
                return
            if reply.drop_after_chunks is not None and index >= reply.drop_after_chunks:
                self._drop()
                return
            if index and reply.chunk_delay_s and self.owner._stopping.wait(reply.chunk_delay_s):
                return
            self._event({**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
        self._event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": reply.finish_reason}]})
        if include_usage and reply.usage_in_stream:
            self._event({**base, "choices": [], "usage": _usage(reply)})
        self._event(b"[DONE]")
        self._chunk(b"")

    def _drop(self) -> None:
        """Close the TCP connection at once (RST), without finishing the response."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _error(message: str, kind: str | None, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _usage(reply: StubReply) -> dict[str, int]:
    completion = reply.completion_tokens if reply.completion_tokens is not None else len(reply.split())
    total = reply.prompt_tokens + completion
    return {"prompt_tokens": reply.prompt_tokens, "completion_tokens": completion, "total_tokens": total}


def _completion(reply: StubReply, model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": reply.text}, "finish_reason": reply.finish_reason}
        ],
        "usage": _usage(reply),
    }


__all__ = ["OpenAIStub", "RecordedRequest", "StubReply"]
