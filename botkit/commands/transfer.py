"""``botkit export`` and ``botkit import``: conversations, messages and feedback as JSON lines."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import typer

from botkit.commands._common import BotOption, cli_errors, err_console, load_bot_config, print_json

FileArgument = typer.Argument(..., exists=True, dir_okay=False, help="A file written by `botkit export`.")
DatabaseOption = typer.Option(
    None, "--database-url", help="Database to use instead of the bot's database_url (e.g. the target of a move)."
)


def register(app: typer.Typer) -> None:
    """Add ``export`` and ``import`` to the CLI."""

    @app.command("export")
    def export(
        bot: Path = BotOption,
        out: str = typer.Option("-", "--out", "-o", help="File to write (default: standard output)."),
        since: str = typer.Option(None, help="Only conversations active since: 7d, 12h, 30m or a date (2026-01-31)."),
        database_url: str = DatabaseOption,
        all_bots: bool = typer.Option(False, "--all-bots", help="Every bot's conversations in the database."),
    ) -> None:
        """Write conversations, messages and feedback as JSON lines (a backup, or a move to another database)."""
        from botkit.transfer import export_to, parse_since

        config = load_bot_config(bot)
        with cli_errors():
            url = database_url or config.resolved_database_url
            when = parse_since(since)
            name = None if all_bots else config.name
            if out == "-":
                report = asyncio.run(export_to(sys.stdout, url, since=when, bot=name))
                sys.stdout.flush()
            else:
                target = Path(out)
                partial = target.with_name(target.name + ".partial")
                with partial.open("w", encoding="utf-8") as handle:
                    report = asyncio.run(export_to(handle, url, since=when, bot=name))
                partial.replace(target)  # never a half-written backup under the final name
        err_console.print(f"exported {report.conversations} conversations, {report.messages} messages, "
                          f"{report.feedback} feedback")

    @app.command("import")
    def import_(
        file: Path = FileArgument,
        bot: Path = BotOption,
        database_url: str = DatabaseOption,
        json_output: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    ) -> None:
        """Import a `botkit export` file; importing the same file again changes nothing."""
        from botkit.transfer import import_from

        config = load_bot_config(bot)
        with cli_errors():
            url = database_url or config.resolved_database_url
            with file.open(encoding="utf-8") as handle:
                report = asyncio.run(import_from(handle, url))
        if json_output:
            print_json(report.to_dict())
        else:
            err_console.print(f"imported {report.conversations} conversations, {report.messages} messages, "
                              f"{report.feedback} feedback; {report.updated} updated, {report.skipped} already present, "
                              f"{len(report.conflicts)} conflicts")
            for line in report.conflicts[:10]:
                err_console.print(f"  conflict: {line}", highlight=False, markup=False)
        if report.conflicts:
            raise typer.Exit(1)
