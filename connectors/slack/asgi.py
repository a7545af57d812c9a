"""Serve the Slack connector over HTTP (Events API and interactivity) in a Starlette/FastAPI app.

``connectors.web.app.create_app`` calls :func:`mount` when ``slack.signing_secret`` and
``slack.bot_token`` are set, so ``botkit serve`` answers Slack at ``/slack/events``. Any
other Starlette or FastAPI app can do the same::

    from connectors.slack.asgi import mount
    mount(app, bot)          # POST /slack/events: Event Subscriptions and Interactivity URL
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from botkit.bot import Bot
from botkit.config import SlackSettings
from botkit.errors import ConfigError
from connectors.slack import SLACK_EXTRA_HINT

EVENTS_PATH = "/slack/events"


def mount(
    app: Starlette, bot: Bot, *, settings: SlackSettings | None = None, path: str = EVENTS_PATH, **options: Any
) -> Any:
    """Add ``POST path`` (Slack's Request URL for events and interactivity) to ``app``.

    The app's lifespan starts the connector (recovery of unfinished events) and, at
    shutdown, lets answers in progress finish. ``options`` go to
    :class:`~connectors.slack.handler.SlackConnector`, which is returned.
    """
    settings = settings or bot.config.slack
    if not settings.signing_secret:
        raise ConfigError("serving Slack over HTTP needs slack.signing_secret", hint="set SLACK_SIGNING_SECRET")
    try:
        from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler

        from connectors.slack.handler import SlackConnector
    except ImportError as exc:
        raise ConfigError(f"the Slack connector needs {exc.name}", hint=SLACK_EXTRA_HINT) from exc

    connector = SlackConnector(bot, settings=settings, **options)
    handler = AsyncSlackRequestHandler(connector.app)

    async def slack_events(request: Request) -> Response:
        return await handler.handle(request)

    app.router.add_route(path, slack_events, methods=["POST"], name="slack_events", include_in_schema=False)
    inner: Callable[[Any], AbstractAsyncContextManager[Any]] = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(scope_app: Any) -> AsyncIterator[Any]:
        async with inner(scope_app) as state:
            await connector.start()
            try:
                yield state
            finally:
                await connector.aclose()

    app.router.lifespan_context = lifespan
    app.state.slack = connector
    return connector
