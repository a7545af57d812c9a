"""Fixtures of the web connector's tests.

One bot, built from a copy of ``examples/faq-agent`` with the extractive backend and
real embeddings, is started and ingested once per test session (``web_bot``) and shared
by the HTTP, OpenAI-compatible and browser tests, which all run on the session's event
loop (``pytestmark = pytest.mark.asyncio(loop_scope="session")``). ``live_server`` serves
the same app with uvicorn on 127.0.0.1 and a free port, as a task of that loop. The
helpers below reach test modules through the ``kit`` fixture (no imports between test
files).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from botkit.bot import Bot
from botkit.config import WebSettings

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "faq-agent"
PUBLIC_KEY = "pk_test_0123456789abcdef"
ALLOWED_ORIGIN = "https://shop.example.com"
BOT_NAME = "orbitly"


# A slice of the example help centre: enough to answer and cite, small enough to embed fast.
KNOWLEDGE = ("account/reset-password.md", "account/two-factor-authentication.md",
             "billing/plans-and-pricing.md", "integrations/slack.md")


def make_bot_dir(root: Path, *, name: str = BOT_NAME, backends: str = '["extractive"]', extra: str = "") -> Path:
    """A bot directory with part of the example's knowledge base (a tiny one if it is missing)."""
    root.mkdir(parents=True, exist_ok=True)
    if all((EXAMPLE / "knowledge" / name).is_file() for name in KNOWLEDGE):
        for article in KNOWLEDGE:
            (root / "knowledge" / article).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(EXAMPLE / "knowledge" / article, root / "knowledge" / article)
    else:  # pragma: no cover - the example ships with the repo
        (root / "knowledge").mkdir()
        (root / "knowledge" / "reset-password.md").write_text(
            "# Resetting your password\n\nGo to the login page and click **Forgot password?**. "
            "The reset link is valid for 60 minutes.\n", encoding="utf-8")
    (root / "bot.yaml").write_text(
        f"name: {name}\nbackends: {backends}\nweb:\n  public_key: {PUBLIC_KEY}\n"
        f"  allowed_origins: [\"{ALLOWED_ORIGIN}\"]\n{extra}", encoding="utf-8")
    return root


def web_settings(**overrides: Any) -> WebSettings:
    """The tests' web settings: no rate limits unless a test sets them."""
    values: dict[str, Any] = {"public_key": PUBLIC_KEY, "allowed_origins": [ALLOWED_ORIGIN],
                              "rate_limit_per_minute": 0, "conversation_rate_limit_per_minute": 0}
    values.update(overrides)
    return WebSettings(**values)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def serve(app: Any, port: int | None = None) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 as a task of the running loop; yield its URL."""
    import uvicorn

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:  # leave pytest's signal handling alone
            yield

    port = port or free_port()
    server = _Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    if not server.started:
        task.result()
        raise RuntimeError("uvicorn did not start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=15)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def web_bot(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Bot]:
    """The example bot (extractive backend, real embeddings), started and ingested once."""
    # The session's tests sign in to the console many times from 127.0.0.1 within a minute:
    # the sign-in limit is tested on its own (test_console.py), not by accident here.
    root = make_bot_dir(tmp_path_factory.mktemp("web") / "bot", extra="console:\n  login_attempts_per_minute: 10000\n")
    bot = Bot.from_dir(root, environ={})
    await bot.start()
    await bot.ingest_if_needed()
    try:
        yield bot
    finally:
        await bot.aclose()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def web_app(web_bot: Bot) -> AsyncIterator[Any]:
    """The web app of ``web_bot`` (the test session owns the bot)."""
    from connectors.web.app import create_app

    app = create_app(web_bot, settings=web_settings(), owns_bot=False)
    try:
        yield app
    finally:
        await app.state.web.aclose()


@pytest_asyncio.fixture(loop_scope="session")
async def client(web_app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client calling the app in-process (no socket)."""
    transport = httpx.ASGITransport(app=web_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=60) as http:
        yield http


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def api_key(web_bot: Bot) -> str:
    """A fresh API key (its secret) in the bot's database."""
    from botkit.keys import ApiKeys

    keys = ApiKeys.from_url(web_bot.config.resolved_database_url)
    try:
        _, secret = await keys.create(name="tests")
    finally:
        await keys.aclose()
    return secret


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def live_server(web_app: Any) -> AsyncIterator[str]:
    """The app served by uvicorn on 127.0.0.1:<free port>."""
    async with serve(web_app) as url:
        yield url


async def new_conversation(http: httpx.AsyncClient) -> tuple[str, dict[str, str]]:
    """Create a conversation; return its id and the headers that authorise it."""
    response = await http.post("/api/v1/conversations", headers={"X-Bot-Key": PUBLIC_KEY})
    assert response.status_code == 201, response.text
    body = response.json()
    return body["id"], {"Authorization": f"Bearer {body['token']}"}


def parse_sse(payload: str) -> list[tuple[str, Any]]:
    """Split an SSE body into (event, JSON data) pairs."""
    import json

    events = []
    for frame in payload.replace("\r\n", "\n").split("\n\n"):
        name, data = "message", []
        for line in frame.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
        if data:
            events.append((name, json.loads("\n".join(data))))
    return events


class Kit:
    """The helpers and constants of this folder, handed to tests by the ``kit`` fixture."""

    PUBLIC_KEY = PUBLIC_KEY
    ALLOWED_ORIGIN = ALLOWED_ORIGIN
    BOT_NAME = BOT_NAME
    make_bot_dir = staticmethod(make_bot_dir)
    web_settings = staticmethod(web_settings)
    serve = staticmethod(serve)
    new_conversation = staticmethod(new_conversation)
    parse_sse = staticmethod(parse_sse)


@pytest.fixture(scope="session")
def kit() -> type[Kit]:
    """This folder's helpers (see :class:`Kit`)."""
    return Kit


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def browser() -> AsyncIterator[Any]:
    """Debian's headless Chromium driven by Playwright (one per test module)."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    playwright_api = pytest.importorskip("playwright.async_api")
    async with playwright_api.async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()
