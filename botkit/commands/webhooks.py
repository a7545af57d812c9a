"""``botkit webhooks add|list|remove|deliveries|deliver``: signed outgoing webhooks."""

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
from botkit.errors import ConfigError
from botkit.webhooks import EVENT_TYPES, Webhooks

T = TypeVar("T")


def _run(config: BotConfig, action: Callable[[Webhooks], Awaitable[T]]) -> T:
    async def go() -> T:
        hooks = Webhooks.from_url(config.resolved_database_url)
        try:
            await hooks.migrate()
            return await action(hooks)
        finally:
            await hooks.aclose()

    with cli_errors():
        try:
            return asyncio.run(go())
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc


def register(app: typer.Typer) -> None:
    """Add the ``webhooks`` command group to the CLI."""
    hooks_app = typer.Typer(help="Signed outgoing webhooks (helpdesks, pagers): endpoints and deliveries.",
                            no_args_is_help=True)
    app.add_typer(hooks_app, name="webhooks")

    @hooks_app.command("add")
    def add(
        url: str = typer.Argument(..., help="The endpoint's http(s) URL."),
        bot: Path = BotOption,
        events: list[str] = typer.Option([], "--event", "--events", "-e",
                                         help=f"An event to send (repeatable; default: all of {', '.join(EVENT_TYPES)})."),
        json_output: bool = typer.Option(False, "--json", help="Print the endpoint and its secret as JSON."),
    ) -> None:
        """Register an endpoint and print its signing secret (shown this once)."""
        chosen = [e.strip() for item in events for e in item.split(",") if e.strip()]
        endpoint, secret = _run(load_bot_config(bot), lambda h: h.add(url, events=chosen or None))
        if json_output:
            print_json({"id": endpoint.id, "url": endpoint.url, "events": list(endpoint.events), "secret": secret})
            return
        console.print(secret, highlight=False, soft_wrap=True)
        err_console.print(f"[dim]endpoint {endpoint.id} → {escape(url)} ({', '.join(endpoint.events)}). Store the "
                          "secret now: verify X-Botkit-Signature = v1=HMAC-SHA256(secret, \"<X-Botkit-Timestamp>.<body>\").[/]")

    @hooks_app.command("list")
    def list_endpoints(bot: Path = BotOption, json_output: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
        """List endpoints (never their secrets)."""
        found = _run(load_bot_config(bot), lambda h: h.list())
        if json_output:
            print_json([{"id": e.id, "url": e.url, "events": list(e.events), "created_at": e.created_at.isoformat(),
                         "active": e.active} for e in found])
            return
        if not found:
            console.print("no webhook endpoints; add one with `botkit webhooks add URL`")
            return
        table = Table("id", "url", "events", "created")
        for e in found:
            table.add_row(e.id, escape(e.url), ", ".join(e.events), f"{e.created_at:%Y-%m-%d %H:%M}")
        console.print(table)

    @hooks_app.command("remove")
    def remove(endpoint_id: str = typer.Argument(..., metavar="ID", help="The endpoint's id."),
               bot: Path = BotOption) -> None:
        """Remove an endpoint (its pending deliveries are dropped)."""
        if not _run(load_bot_config(bot), lambda h: h.remove(endpoint_id)):
            err_console.print(f"[bold red]error:[/] no webhook endpoint with id {escape(endpoint_id)}")
            raise typer.Exit(2)
        console.print(f"removed {escape(endpoint_id)}")

    @hooks_app.command("deliveries")
    def deliveries(
        bot: Path = BotOption,
        status: str | None = typer.Option(None, "--status", help="pending, delivered or failed."),
        limit: int = typer.Option(50, "--limit", min=1, max=1000),
        json_output: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """Show recent deliveries, newest first."""
        found = _run(load_bot_config(bot), lambda h: h.deliveries(limit=limit, status=status))
        if json_output:
            print_json([{"id": d.id, "endpoint_id": d.endpoint_id, "event_id": d.event_id, "type": d.event_type,
                         "status": d.status, "attempts": d.attempts, "last_status": d.last_status,
                         "last_error": d.last_error, "next_attempt_at": d.next_attempt_at.isoformat()} for d in found])
            return
        table = Table("id", "endpoint", "event", "status", "attempts", "last error")
        for d in found:
            table.add_row(str(d.id), d.endpoint_id, d.event_type, d.status, str(d.attempts), escape(d.last_error or ""))
        console.print(table)

    @hooks_app.command("deliver")
    def deliver(bot: Path = BotOption) -> None:
        """Attempt every due delivery once (what `botkit serve` does in the background)."""
        from botkit.webhooks_delivery import DeliveryWorker

        config = load_bot_config(bot)

        async def once(hooks: Webhooks) -> tuple[int, int]:
            worker = DeliveryWorker(hooks, config.webhooks)
            try:
                attempted = await worker.run_once()
            finally:
                await worker.aclose()
            return attempted, len(await hooks.deliveries(limit=1000, status="pending"))

        attempted, pending = _run(config, once)
        console.print(f"attempted {attempted} deliveries; {pending} still pending")
