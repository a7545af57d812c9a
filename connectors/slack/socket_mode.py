"""Run the Slack connector in Socket Mode: no public URL, Slack connects over a WebSocket.

``botkit slack --socket`` calls :func:`run_socket_mode`. It needs ``slack.app_token``
(``xapp-...``, scope ``connections:write``) and ``slack.bot_token``; the signing secret
is not used (Socket Mode traffic is authenticated by the app token).
"""

from __future__ import annotations

import asyncio
import logging

from botkit.bot import Bot
from botkit.config import SlackSettings
from botkit.errors import ConfigError
from connectors.slack import SLACK_EXTRA_HINT

log = logging.getLogger("botkit.slack")


def check_settings(settings: SlackSettings) -> None:
    """Raise :class:`ConfigError` naming the tokens Socket Mode lacks."""
    missing = [key for key in ("bot_token", "app_token") if not getattr(settings, key)]
    if missing:
        variables = {"app_token": "SLACK_APP_TOKEN (xapp-...)", "bot_token": "SLACK_BOT_TOKEN (xoxb-...)"}
        raise ConfigError(
            "Socket Mode needs " + " and ".join(f"slack.{key}" for key in missing),
            hint="set " + " and ".join(variables[key] for key in missing),
        )


async def run_socket_mode(
    bot: Bot, *, settings: SlackSettings | None = None, stop: asyncio.Event | None = None
) -> None:
    """Connect to Slack and answer until ``stop`` is set (forever by default); closes the bot."""
    settings = settings or bot.config.slack
    check_settings(settings)
    try:
        from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

        from connectors.slack.handler import SlackConnector
    except ImportError as exc:
        raise ConfigError(f"Socket Mode needs {exc.name}", hint=SLACK_EXTRA_HINT) from exc

    connector = SlackConnector(bot, settings=settings)
    handler = AsyncSocketModeHandler(connector.app, app_token=settings.app_token)
    try:
        await connector.start()
        await handler.connect_async()  # type: ignore[no-untyped-call]
        log.info("connected to Slack in Socket Mode")
        await (stop or asyncio.Event()).wait()
    finally:
        await handler.close_async()  # type: ignore[no-untyped-call]
        await connector.aclose()
        await bot.aclose()
