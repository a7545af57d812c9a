"""Fixtures for the knowledge tests: a real HTTP server on 127.0.0.1 and test-time PDFs."""

from __future__ import annotations

import io
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from knowledge.settings import KnowledgeSettings
from knowledge.types import RawSource, SourceRef


@dataclass
class _Route:
    status: int
    body: bytes
    headers: dict[str, str]
    chunked: bool


@dataclass
class LocalSite:
    """Routes served by a threaded ``http.server`` on 127.0.0.1 (port chosen by the OS)."""

    base: str = ""
    routes: dict[str, _Route] = field(default_factory=dict)

    def add(
        self, path: str, body: bytes | str = b"", *, status: int = 200,
        content_type: str = "text/html; charset=utf-8", headers: dict[str, str] | None = None, chunked: bool = False,
    ) -> str:
        """Serve ``body`` at ``path``; return the full URL."""
        data = body.encode() if isinstance(body, str) else body
        self.routes[path] = _Route(status, data, {"Content-Type": content_type, **(headers or {})}, chunked)
        return self.url(path)

    def url(self, path: str) -> str:
        return self.base + path


def _handler(site: LocalSite) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            route = site.routes.get(self.path) or _Route(404, b"not found", {"Content-Type": "text/plain"}, False)
            try:
                self._send(route)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client stopped reading (a size limit): expected

        def _send(self, route: _Route) -> None:
            self.send_response(route.status)
            for key, value in route.headers.items():
                self.send_header(key, value)
            if not route.chunked:
                self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                self.wfile.write(route.body)
                return
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for start in range(0, len(route.body), 4096):
                piece = route.body[start:start + 4096]
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def site() -> Iterator[LocalSite]:
    """A local web site; add pages with ``site.add(path, body)``."""
    local = LocalSite()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(local))
    server.daemon_threads = True
    local.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield local
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _make_pdf(pages: list[list[str]], *, title: str | None = None, encrypt: str | None = None) -> bytes:
    """A PDF with a text layer: one list of lines per page (reportlab)."""
    from reportlab.pdfgen import canvas

    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, encrypt=encrypt)
    if title:
        pdf.setTitle(title)
    for lines in pages:
        y = 800
        for line in lines:
            pdf.drawString(72, y, line)
            y -= 16
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def _make_image_only_pdf() -> bytes:
    """A PDF whose page holds only vector drawing, no text layer."""
    from reportlab.pdfgen import canvas

    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer)
    pdf.rect(72, 600, 200, 100, fill=1)
    pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def _raw_file(path: Path, name: str | None = None) -> RawSource:
    """Read ``path`` through the public API as a file source."""
    from knowledge.sources import read

    ref = SourceRef(name=name or path.name, location=str(path), kind="file")
    return read(ref, KnowledgeSettings())


@pytest.fixture
def make_pdf() -> Callable[..., bytes]:
    """Builder: ``make_pdf([["line", ...], ...], title=..., encrypt=...)`` → PDF bytes."""
    return _make_pdf


@pytest.fixture
def image_only_pdf() -> bytes:
    """PDF bytes with no text layer."""
    return _make_image_only_pdf()


@pytest.fixture
def raw_file() -> Callable[..., RawSource]:
    """Reader: ``raw_file(path)`` → RawSource via :func:`knowledge.sources.read`."""
    return _raw_file
