"""``botkit report``: deflection, handoffs, abstentions, CSAT, latency, cost, sources and gaps."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import typer

from botkit.commands._common import BotOption, cli_errors, console, err_console, load_bot_config, print_json
from botkit.config import BotConfig
from botkit.errors import ConfigError


def known_sources(config: BotConfig) -> list[str]:
    """The knowledge base's source names, from the manifest (no embedding model loaded)."""
    path = config.data_path / "lexical.db"
    if not path.exists():
        return []
    from knowledge.lexical import LexicalIndex
    from knowledge.manifest import Manifest

    lexical = LexicalIndex(path)
    try:
        return sorted(Manifest(lexical).entries())
    finally:
        lexical.close()


async def build(config: BotConfig, *, since: dt.date, with_gaps: bool) -> tuple[Any, list[Any]]:
    """The report and, when asked, the knowledge gaps of the bot since ``since``."""
    from botkit.analytics.gaps import find_gaps, gap_questions
    from botkit.analytics.metrics import compute_report
    from botkit.store.engine import create_engine
    from botkit.store.migrate import ensure_schema

    engine = create_engine(config.resolved_database_url)
    try:
        await ensure_schema(engine)
        sources = await asyncio.to_thread(known_sources, config)
        report = await compute_report(engine, bot=config.name, since=since, tz_name=config.business_hours.timezone,
                                      prices=config.console.prices, known_sources=sources)
        if not with_gaps:
            return report, []
        start = dt.datetime.combine(since, dt.time(0), tzinfo=dt.timezone.utc)
        questions = await gap_questions(engine, bot=config.name, since=start)
    finally:
        await engine.dispose()
    if not questions:
        return report, []
    from botkit.commands.knowledge import knowledge_errors, open_knowledge_base

    with knowledge_errors():
        kb = await asyncio.to_thread(open_knowledge_base, config)
    try:
        gaps = await asyncio.to_thread(find_gaps, questions, embed=kb.embedder.embed,
                                       distance=config.console.gap_distance, retriever=kb.retriever)
    finally:
        kb.close()
    return report, gaps


def _since(value: str | None, days: int) -> dt.date:
    if value is None:
        return dt.date.today() - dt.timedelta(days=days - 1)
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"--since: {value!r} is not a date like 2024-06-01") from None


def register(app: typer.Typer) -> None:
    """Add ``report`` to the CLI."""

    @app.command()
    def report(
        bot: Path = BotOption,
        since: str | None = typer.Option(None, "--since", help="First day (YYYY-MM-DD; default: 30 days ago)."),
        days: int = typer.Option(30, "--days", min=1, max=3660, help="Days covered when --since is not given."),
        json_output: bool = typer.Option(False, "--json", help="Print the report as JSON."),
        html: Path | None = typer.Option(None, "--html", help="Also write an HTML report with charts to this file."),
        gaps_csv: Path | None = typer.Option(None, "--gaps-csv", help="Also write the knowledge gaps as CSV."),
        gaps: bool = typer.Option(True, "--gaps/--no-gaps", help="Find knowledge gaps (loads the embedding model)."),
    ) -> None:
        """Support analytics: per day and channel, backends, sources, and the knowledge gaps to write first."""
        from botkit.analytics.gaps import gaps_csv as to_csv
        from botkit.analytics.report import format_text, standalone_html

        config = load_bot_config(bot)
        with cli_errors():
            first = _since(since, days)
            result, clusters = asyncio.run(build(config, since=first, with_gaps=gaps or gaps_csv is not None))
            if html is not None:
                html.write_text(standalone_html(result, clusters), encoding="utf-8")
                err_console.print(f"[dim]wrote {html}[/]")
            if gaps_csv is not None:
                gaps_csv.write_text(to_csv(clusters), encoding="utf-8")
                err_console.print(f"[dim]wrote {gaps_csv} ({len(clusters)} gaps)[/]")
        if json_output:
            print_json({**result.to_dict(), "gaps": [c.to_dict() for c in clusters]})
        else:
            console.print(format_text(result, clusters), highlight=False, markup=False, soft_wrap=True, end="")
