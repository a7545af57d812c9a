"""A bot for the Slack tests and benchmark: scripted replies, a fixed knowledge base, no model.

``make_bot(...)`` builds it in-process; run as a script, it serves the web app (with the
Slack connector at ``/slack/events``) with uvicorn, for tests that kill the server::

    python -m tests.helpers.slack_server --root DIR --database-url URL --api-url URL --port N \
        [--first-delay 5] [--delay 0] [--grace 1] [--max-concurrent-answers 4]

The first reply takes ``--first-delay`` seconds, later ones ``--delay``; ``--grace`` is the
connector's recovery grace period (seconds before an unfinished event is taken over).
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, ExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from botkit.backends.scripted import ScriptedBackend
from botkit.bot import Bot
from botkit.config import BotConfig, SlackSettings
from knowledge.types import Passage
from tests.helpers.slack_stub import (
    SIGNING_SECRET,
    TOKEN,
    SlackCall,
    SlackStub,
    event_body,
    interaction_body,
    signed_headers,
)

PASSAGE = Passage(
    chunk_id="reset-password#0", source="account/reset-password.md", title="Resetting your password",
    section="", text="Open the login page and click Forgot password? The link is valid for 60 minutes.",
    score=0.9, url="https://help.example.com/reset-password",
)


class _Embedder:
    def embed(self, texts: list[str]) -> list[list[float]]:
        return [[0.0] for _ in texts]


class _Retriever:
    def retrieve(self, query: str, *, k: int | None = None, message: str | None = None) -> list[Passage]:
        return [PASSAGE]


class FixedKnowledge:
    """A knowledge base that finds the same passage for every question (no model, no index)."""

    def __init__(self) -> None:
        self.retriever = _Retriever()
        self.embedder = _Embedder()

    def stats(self) -> dict[str, Any]:
        return {"chunks": 1}

    def close(self) -> None:
        pass


def make_bot(
    root: Path, *, database_url: str, api_url: str, backend: ScriptedBackend | None = None,
    support_channel: str | None = "CSUPPORT", dm_idle_minutes: float = 30.0, name: str = "slackbot",
    max_concurrent_answers: int | None = None,
) -> Bot:
    """A bot answering from :data:`PASSAGE` with a :class:`ScriptedBackend`, wired to a Slack stub."""
    root.mkdir(parents=True, exist_ok=True)
    slack = SlackSettings(bot_token=TOKEN, signing_secret=SIGNING_SECRET, api_url=api_url,
                          support_channel=support_channel, dm_idle_minutes=dm_idle_minutes)
    if max_concurrent_answers is not None:
        slack.max_concurrent_answers = max_concurrent_answers
    config = BotConfig(name=name, database_url=database_url, slack=slack, root=root)
    config.web.rate_limit_per_minute = 0
    config.web.conversation_rate_limit_per_minute = 0
    return Bot(config, backends=[backend or ScriptedBackend()], knowledge=FixedKnowledge())


class SlackHarness:
    """A served bot with its Slack stub: send signed events and clicks, read what was posted."""

    def __init__(self, *, url: str, http: httpx.AsyncClient, stub: SlackStub, bot: Bot, backend: ScriptedBackend,
                 app: Any) -> None:
        self.url, self.http, self.stub, self.bot, self.backend, self.app = url, http, stub, bot, backend, app

    @property
    def connector(self) -> Any:
        """The app's :class:`~connectors.slack.handler.SlackConnector`."""
        return self.app.state.slack

    async def event(self, event: Mapping[str, Any], *, event_id: str, retry: int = 0, secret: str = SIGNING_SECRET,
                    timestamp: int | None = None) -> httpx.Response:
        """POST a signed ``event_callback`` to ``/slack/events`` (``retry`` > 0: Slack's retry headers)."""
        body = event_body(event, event_id=event_id)
        headers = signed_headers(body, secret=secret, timestamp=timestamp)
        if retry:
            headers |= {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
        return await self.http.post("/slack/events", content=body, headers=headers)

    async def click(self, payload: Mapping[str, Any]) -> httpx.Response:
        """POST a signed interactivity payload (a button click)."""
        body = interaction_body(payload)
        headers = signed_headers(body, content_type="application/x-www-form-urlencoded")
        return await self.http.post("/slack/events", content=body, headers=headers)

    async def settle(self, timeout: float = 15.0) -> None:
        """Wait until no event or click is being processed."""
        assert await self.connector.delivery.idle(timeout), "Slack events still processing"

    def calls(self, method: str, channel: str) -> list[SlackCall]:
        """The stub's calls of ``method`` for ``channel``."""
        return [call for call in self.stub.calls_to(method) if call.args.get("channel") == channel]


@asynccontextmanager
async def slack_harness(
    root: Path, serve: Callable[[Any], AbstractAsyncContextManager[str]], *, database_url: str | None = None,
    stub: SlackStub | None = None, backend: ScriptedBackend | None = None, **options: Any,
) -> AsyncIterator[SlackHarness]:
    """Serve a :func:`make_bot` bot (web app + Slack connector) with ``serve`` (uvicorn on a free port)."""
    from connectors.web.app import create_app

    with ExitStack() as stack:
        stub = stub or stack.enter_context(SlackStub())
        backend = backend or ScriptedBackend()
        bot = make_bot(root, database_url=database_url or f"sqlite:///{root / 'botkit.db'}", api_url=stub.api_url,
                       backend=backend, **options)
        app = create_app(bot)
        async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
            yield SlackHarness(url=url, http=http, stub=stub, bot=bot, backend=backend, app=app)


async def _verified_noop(request: Any) -> Any:
    """A bare endpoint for benchmarks: verify Slack's signature, answer 200, nothing else."""
    from slack_sdk.signature import SignatureVerifier
    from starlette.responses import Response

    body = await request.body()
    valid = SignatureVerifier(SIGNING_SECRET).is_valid_request(body, dict(request.headers))
    return Response(status_code=200 if valid else 401)


def main() -> None:
    """Serve the bot with uvicorn (see the module docstring)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--first-delay", type=float, default=0.0)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--replies", type=int, default=1000, help="scripted replies that take --delay")
    parser.add_argument("--grace", type=float, default=None)
    parser.add_argument("--max-concurrent-answers", type=int, default=None, help="slack.max_concurrent_answers")
    args = parser.parse_args()

    import uvicorn

    from connectors.web.app import create_app

    backend = ScriptedBackend()
    backend.enqueue("You can reset it from the login page [1].", delay=args.first_delay)
    for _ in range(args.replies):
        backend.enqueue("You can reset it from the login page [1].", delay=args.delay)
    bot = make_bot(args.root, database_url=args.database_url, api_url=args.api_url, backend=backend,
                   max_concurrent_answers=args.max_concurrent_answers)
    app = create_app(bot)
    app.add_route("/bench/noop", _verified_noop, methods=["POST"], include_in_schema=False)
    if args.grace is not None:  # the app mounted the connector with the default grace: shorten it
        app.state.slack.delivery.grace_s = args.grace
        app.state.slack.delivery.sweep_interval_s = max(args.grace, 0.2)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
