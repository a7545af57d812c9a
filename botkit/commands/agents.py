"""``botkit agents create|list|update|remove``: accounts of the agent console (``/console``)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import typer
from rich.markup import escape
from rich.table import Table

from botkit.agents import Agent, AgentDirectory
from botkit.commands._common import BotOption, cli_errors, console, err_console, load_bot_config, print_json
from botkit.config import BotConfig
from botkit.errors import ConfigError

T = TypeVar("T")


def run_with_agents(config: BotConfig, action: Callable[[AgentDirectory], Awaitable[T]]) -> T:
    """Run ``action`` on the bot's agent directory (schema migrated first), with CLI error handling."""

    async def go() -> T:
        directory = AgentDirectory.from_url(config.resolved_database_url)
        try:
            await directory.migrate()
            return await action(directory)
        finally:
            await directory.aclose()

    with cli_errors():
        try:
            return asyncio.run(go())
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))


def _as_json(agent: Agent) -> dict[str, object]:
    return {"id": agent.id, "email": agent.email, "role": agent.role, "bots": list(agent.bots),
            "created_at": agent.created_at.isoformat(), "disabled": agent.disabled}


def register(app: typer.Typer) -> None:
    """Add the ``agents`` command group to the CLI."""
    agents_app = typer.Typer(help="Manage agent accounts of the console (/console).", no_args_is_help=True)
    app.add_typer(agents_app, name="agents")
    role_help = "agent: only the bots given with --bot; admin: every bot, webhooks and analytics."
    bot_help = "A bot (its name in bot.yaml) the agent answers for; repeat for several (default: this bot)."

    @agents_app.command("create")
    def create(
        email: str = typer.Argument(..., help="The agent's email address (their sign-in name)."),
        bot: Path = BotOption,
        role: str = typer.Option("agent", "--role", help=role_help),
        bots: list[str] = typer.Option([], "--for", "--bot-name", help=bot_help),
        password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from stdin."),
    ) -> None:
        """Create an account (the password is prompted, or read with --password-stdin)."""
        config = load_bot_config(bot)
        password = _password(password_stdin)
        chosen = bots or [config.name]
        agent = run_with_agents(config, lambda d: d.create(email, password, role=role, bots=chosen))  # type: ignore[arg-type]
        scope = "every bot" if agent.role == "admin" else ", ".join(agent.bots)
        console.print(f"created {escape(agent.email)} ({agent.role}; {escape(scope)}); sign in at /console/login",
                      highlight=False)

    @agents_app.command("list")
    def list_agents(bot: Path = BotOption, json_output: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
        """List accounts (never passwords)."""
        found = run_with_agents(load_bot_config(bot), lambda d: d.list())
        if json_output:
            print_json([_as_json(a) for a in found])
            return
        if not found:
            console.print("no agents; create one with `botkit agents create EMAIL`")
            return
        table = Table("email", "role", "bots", "created", "status")
        for a in found:
            table.add_row(escape(a.email), a.role, escape(", ".join(a.bots) or "–"), f"{a.created_at:%Y-%m-%d}",
                          "disabled" if a.disabled else "active")
        console.print(table)

    @agents_app.command("update")
    def update(
        email: str = typer.Argument(..., help="The agent's email address."),
        bot: Path = BotOption,
        role: str | None = typer.Option(None, "--role", help=role_help),
        bots: list[str] = typer.Option([], "--for", "--bot-name", help="Replace the agent's bots (repeatable)."),
        password: bool = typer.Option(False, "--password", help="Set a new password (prompted)."),
        password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the new password from stdin."),
        disable: bool | None = typer.Option(None, "--disable/--enable", help="Block or allow sign-in."),
    ) -> None:
        """Change an account's role, bots, password or status (signs it out when the password changes)."""
        config = load_bot_config(bot)
        secret = _password(password_stdin) if password or password_stdin else None
        changed = run_with_agents(config, lambda d: d.update(email, password=secret, role=role,  # type: ignore[arg-type]
                                                             bots=bots or None, disabled=disable))
        if not changed:
            err_console.print(f"[bold red]error:[/] no agent with email {escape(email)}")
            raise typer.Exit(2)
        console.print(f"updated {escape(email)}", highlight=False)

    @agents_app.command("remove")
    def remove(email: str = typer.Argument(..., help="The agent's email address."), bot: Path = BotOption) -> None:
        """Delete an account (its sessions and claims end)."""
        if not run_with_agents(load_bot_config(bot), lambda d: d.remove(email)):
            err_console.print(f"[bold red]error:[/] no agent with email {escape(email)}")
            raise typer.Exit(2)
        console.print(f"removed {escape(email)}", highlight=False)
