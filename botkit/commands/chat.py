"""``botkit ask`` (one turn) and ``botkit chat`` (a terminal chat with streaming)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import typer
from rich.markup import escape

from botkit.commands._common import BotOption, cli_errors, console, err_console, load_bot_config, print_json
from botkit.messages import Citation, Reply, ReplyDelta, ReplyDone


def _citation_lines(citations: list[Citation]) -> list[str]:
    lines = []
    for c in citations:
        where = c.url or c.source
        section = f" › {c.section}" if c.section else ""
        lines.append(f"  [{c.number}] {c.title}{section} ({where})")
    return lines


def _print_footer(reply: Reply) -> None:
    for line in _citation_lines(reply.citations):
        console.print(f"[dim]{escape(line)}[/]")
    if reply.handoff:
        console.print("[yellow]→ this conversation is now with a human agent[/]")


def register(app: typer.Typer) -> None:
    """Add ``ask`` and ``chat`` to the CLI."""

    @app.command()
    def ask(
        question: str = typer.Argument(..., help="The question to ask."),
        bot: Path = BotOption,
        conversation: str | None = typer.Option(None, "--conversation", "-c", help="Continue this conversation id."),
        json_output: bool = typer.Option(False, "--json", help="Print the reply object as JSON."),
    ) -> None:
        """Ask the bot one question and print its answer with citations.

        Exits with status 1 when no backend could answer (the reason is printed on stderr).
        """
        config = load_bot_config(bot)
        from botkit.bot import Bot

        async def run() -> Reply:
            async with Bot(config) as b:
                await b.ingest_if_needed()
                return await b.reply(conversation or uuid.uuid4().hex, question, channel="cli")

        with cli_errors():
            reply = asyncio.run(run())
        failed = reply.backend is None and not (reply.abstained or reply.handoff)
        if json_output:
            print_json(reply.to_dict())
        else:
            console.print(escape(reply.text) or "[dim](waiting for a human agent)[/]")
            _print_footer(reply)
            console.print(f"[dim]conversation {reply.conversation_id} · {reply.backend or 'no backend'} · {reply.latency_ms:.0f} ms[/]")
        if failed:  # every backend failed; the reason was logged on stderr
            raise typer.Exit(1)

    @app.command()
    def chat(
        bot: Path = BotOption,
        conversation: str | None = typer.Option(None, "--conversation", "-c", help="Continue this conversation id."),
    ) -> None:
        """Chat with the bot in the terminal (answers stream as they are generated)."""
        config = load_bot_config(bot)
        from botkit.bot import Bot

        async def run() -> None:
            async with Bot(config) as b:
                report = await b.ingest_if_needed()
                if report is not None:
                    err_console.print(f"[dim]indexed the knowledge base ({report.chunks} chunks)[/]")
                conv = conversation or uuid.uuid4().hex
                console.print(f"[bold]{escape(config.name)}[/] — {escape(config.web.greeting)}  [dim](Ctrl-D to quit)[/]")
                while True:
                    try:
                        text = await asyncio.to_thread(console.input, "[bold cyan]you ›[/] ")
                    except (EOFError, KeyboardInterrupt):
                        console.print()
                        return
                    if not text.strip():
                        continue
                    console.print("[bold green]bot ›[/] ", end="")
                    async for event in b.stream(conv, text, channel="cli"):
                        if isinstance(event, ReplyDelta):
                            console.print(escape(event.text), end="", soft_wrap=True)
                        elif isinstance(event, ReplyDone):
                            if not event.reply.text:
                                console.print("[dim](a human agent will answer here)[/]", end="")
                            console.print()
                            _print_footer(event.reply)

        with cli_errors():
            asyncio.run(run())
