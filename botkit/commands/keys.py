"""``botkit keys create|list|revoke``: API keys for the admin and OpenAI-compatible endpoints."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import typer
from rich.markup import escape
from rich.table import Table

from botkit.commands._common import BotOption, cli_errors, console, err_console, load_bot_config, print_json
from botkit.config import BotConfig
from botkit.keys import ApiKey, ApiKeys

T = TypeVar("T")


def _run(config: BotConfig, action: Callable[[ApiKeys], Awaitable[T]]) -> T:
    async def go() -> T:
        keys = ApiKeys.from_url(config.resolved_database_url)
        try:
            await keys.migrate()
            return await action(keys)
        finally:
            await keys.aclose()

    with cli_errors():
        return asyncio.run(go())


def _as_json(key: ApiKey) -> dict[str, object]:
    return {"id": key.id, "name": key.name, "created_at": key.created_at.isoformat(),
            "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None, "active": key.active}


def register(app: typer.Typer) -> None:
    """Add the ``keys`` command group to the CLI."""
    keys_app = typer.Typer(help="Manage API keys (admin endpoints and the OpenAI-compatible API).",
                           no_args_is_help=True)
    app.add_typer(keys_app, name="keys")

    @keys_app.command("create")
    def create(
        bot: Path = BotOption,
        name: str = typer.Option("default", "--name", "-n", help="A label to recognise the key by."),
        json_output: bool = typer.Option(False, "--json", help="Print the key as JSON."),
    ) -> None:
        """Create a key and print its secret (shown this once; only its hash is stored)."""
        key, secret = _run(load_bot_config(bot), lambda keys: keys.create(name=name))
        if json_output:
            print_json({**_as_json(key), "key": secret})
            return
        console.print(secret, highlight=False, soft_wrap=True)
        err_console.print(f"[dim]key {key.id} ({escape(key.name)}) created; store the secret now, "
                          "it cannot be shown again. Use it as `Authorization: Bearer <key>`.[/]")

    @keys_app.command("list")
    def list_keys(
        bot: Path = BotOption,
        json_output: bool = typer.Option(False, "--json", help="Print the keys as JSON."),
    ) -> None:
        """List keys (ids, names, dates; never secrets)."""
        found = _run(load_bot_config(bot), lambda keys: keys.list())
        if json_output:
            print_json([_as_json(k) for k in found])
            return
        if not found:
            console.print("no API keys; create one with `botkit keys create --name NAME`")
            return
        table = Table("id", "name", "created", "status")
        for key in found:
            status = "active" if key.active else f"revoked {key.revoked_at:%Y-%m-%d %H:%M}"
            table.add_row(key.id, escape(key.name), f"{key.created_at:%Y-%m-%d %H:%M}", status)
        console.print(table)

    @keys_app.command("revoke")
    def revoke(
        key_id: str = typer.Argument(..., metavar="ID", help="The key's id (from `botkit keys list`)."),
        bot: Path = BotOption,
    ) -> None:
        """Revoke a key: it stops working at once."""
        if not _run(load_bot_config(bot), lambda keys: keys.revoke(key_id)):
            err_console.print(f"[bold red]error:[/] no active API key with id {escape(key_id)}")
            raise typer.Exit(2)
        console.print(f"revoked {escape(key_id)}")
