"""``botkit db``: manage the conversation database's schema.

The store applies pending migrations itself when it opens; these commands let an operator
do it ahead of a deploy (``botkit db upgrade``) and check where a database stands
(``botkit db current``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer

from botkit.commands._common import BotOption, cli_errors, console, load_bot_config


def register(app: typer.Typer) -> None:
    """Add the ``db`` command group to the CLI."""
    db = typer.Typer(help="Manage the conversation database (schema migrations).", no_args_is_help=True)
    app.add_typer(db, name="db")

    @db.command()
    def upgrade(bot: Path = BotOption) -> None:
        """Bring the bot's database schema up to date (creates it if needed)."""
        config = load_bot_config(bot)
        with cli_errors():
            before, after = asyncio.run(_upgrade(config.resolved_database_url))
        where = _display(config.resolved_database_url)
        if before == after:
            console.print(f"{where}: already at revision {after} (head)", highlight=False, soft_wrap=True)
        else:
            console.print(
                f"{where}: upgraded from {before or 'an empty database'} to {after} (head)",
                highlight=False,
                soft_wrap=True,
            )

    @db.command()
    def current(bot: Path = BotOption) -> None:
        """Show the database's schema revision; exit status 1 when an upgrade is pending."""
        config = load_bot_config(bot)
        with cli_errors():
            revision, head = asyncio.run(_current(config.resolved_database_url))
        where = _display(config.resolved_database_url)
        if revision == head:
            console.print(f"{where}: revision {revision} (head)", highlight=False, soft_wrap=True)
            return
        state = "no botkit schema yet" if revision is None else f"revision {revision}"
        console.print(f"{where}: {state}; head is {head} (run `botkit db upgrade`)", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


async def _upgrade(url: str) -> tuple[str | None, str]:
    from botkit.store.engine import create_engine
    from botkit.store.migrate import current_revision, head_revision, upgrade

    engine = create_engine(url)
    try:
        before = await current_revision(engine)
        await upgrade(engine)
        return before, head_revision()
    finally:
        await engine.dispose()


async def _current(url: str) -> tuple[str | None, str]:
    from botkit.store.engine import create_engine
    from botkit.store.migrate import current_revision, head_revision
    from botkit.store.urls import is_sqlite, normalize_database_url

    target = normalize_database_url(url)
    if is_sqlite(target) and not Path(target.database or "").expanduser().exists():
        return None, head_revision()  # do not create the file just to look at it
    engine = create_engine(target)
    try:
        return await current_revision(engine), head_revision()
    finally:
        await engine.dispose()


def _display(url: str) -> str:
    from botkit.store.urls import display_url, normalize_database_url

    return display_url(normalize_database_url(url))
