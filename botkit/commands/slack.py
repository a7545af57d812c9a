"""``botkit slack --socket``: answer in Slack over Socket Mode (no public URL needed).

Over HTTP, Slack is served by ``botkit serve`` (Request URL ``https://HOST/slack/events``)
as soon as ``slack.bot_token`` and ``slack.signing_secret`` are set. This is where botkit
reaches up into :mod:`connectors.slack` (the CLI is the composition root).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import typer
from rich.markup import escape

from botkit.commands._common import BotOption, cli_errors, console, err_console, load_bot_config
from botkit.errors import ConfigError

HTTP_MODE_HINT = (
    "over HTTP, Slack is served by `botkit serve` at /slack/events (set slack.bot_token and "
    "slack.signing_secret); add --socket to connect through Socket Mode instead"
)


def register(app: typer.Typer) -> None:
    """Add ``slack`` to the CLI."""

    @app.command()
    def slack(
        bot: Path = BotOption,
        socket: bool = typer.Option(False, "--socket", help="Connect through Socket Mode (needs slack.app_token)."),
        log_level: str = typer.Option("info", help="Log level (debug, info, warning)."),
    ) -> None:
        """Run the bot in Slack through Socket Mode: mentions, threads, direct messages, buttons.

        Needs SLACK_BOT_TOKEN (xoxb-...) and SLACK_APP_TOKEN (xapp-...), or slack.bot_token and
        slack.app_token in bot.yaml. Ingests the knowledge base first when it is empty or stale.
        """
        config = load_bot_config(bot)
        with cli_errors():
            if not socket:
                raise ConfigError("`botkit slack` runs Socket Mode only", hint=HTTP_MODE_HINT)
            from botkit import heap
            from botkit.bot import Bot
            from connectors.slack.socket_mode import check_settings, run_socket_mode

            check_settings(config.slack)

            logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
            the_bot = Bot(config)
            console.print(f"Connecting [bold]{escape(config.name)}[/] to Slack (Socket Mode)… [dim]Ctrl+C stops[/]")

            async def main() -> None:
                report = await the_bot.ingest_if_needed()
                if report is not None:
                    err_console.print(f"[dim]indexed the knowledge base ({getattr(report, 'chunks', '?')} chunks)[/]")
                await the_bot.start()
                heap.settle()  # the started bot's objects out of the collector's full passes
                await run_socket_mode(the_bot)

            try:
                asyncio.run(main())
            except KeyboardInterrupt:
                console.print("stopped")
