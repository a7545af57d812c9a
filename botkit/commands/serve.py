"""``botkit serve``: the HTTP API, the widget and the OpenAI-compatible API, with uvicorn.

This is where botkit reaches up into :mod:`connectors.web` (the CLI is the composition
root); botkit's core never imports a web framework.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from botkit.commands._common import BotOption, cli_errors, console, err_console, load_bot_config
from botkit.config import BotConfig
from botkit.errors import ConfigError

SERVER_EXTRA_HINT = "install the server extra: pip install 'botkit[server]'"


def scale_out_problem(config: BotConfig, workers: int) -> str | None:
    """Why ``workers`` processes cannot share this bot's state, or ``None`` when they can.

    Several workers need a database server (``database_url``: PostgreSQL) and a Chroma
    server (``knowledge.chroma_url``): SQLite and embedded Chroma have one writer process.
    """
    if workers <= 1:
        return None
    missing = []
    if config.resolved_database_url.startswith("sqlite"):
        missing.append("database_url (a PostgreSQL URL, e.g. postgresql://user@127.0.0.1:5432/botkit)")
    if not config.knowledge.chroma_url:
        missing.append("knowledge.chroma_url (a Chroma server, e.g. http://127.0.0.1:8001 from `chroma run`)")
    if not missing:
        return None
    return (
        f"--workers {workers} needs shared state, but this bot uses "
        + ("SQLite" if missing[0].startswith("database_url") else "PostgreSQL")
        + (" and embedded Chroma" if not config.knowledge.chroma_url else "")
        + "; set " + " and ".join(missing)
        + " (in bot.yaml or BOTKIT_DATABASE_URL / BOTKIT_KNOWLEDGE__CHROMA_URL), or serve with --workers 1"
    )


def _require_server_extra() -> Any:
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as exc:
        raise ConfigError(f"`botkit serve` needs FastAPI and uvicorn ({exc.name} is missing)",
                          hint=SERVER_EXTRA_HINT) from exc
    return uvicorn


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the CLI."""

    @app.command()
    def serve(
        bot: Path = BotOption,
        host: str = typer.Option("127.0.0.1", help="Interface to listen on (0.0.0.0: all)."),
        port: int = typer.Option(8000, min=1, max=65535, help="TCP port."),
        workers: int = typer.Option(1, min=1, max=64, help="Worker processes (>1 needs PostgreSQL + a Chroma server)."),
        log_level: str = typer.Option("info", help="uvicorn log level."),
        forwarded_allow_ips: str = typer.Option(
            None, help="Proxy addresses whose X-Forwarded-For is trusted for client IPs (rate limits), "
            "comma-separated or '*'; default: 127.0.0.1 (uvicorn's $FORWARDED_ALLOW_IPS)."),
    ) -> None:
        """Serve the bot over HTTP: API + SSE, the widget (/widget.js, demo at /), /v1 (OpenAI-compatible).

        Ingests the knowledge base first when it is empty or older than its sources.
        """
        config = load_bot_config(bot)
        with cli_errors():
            uvicorn = _require_server_extra()
            problem = scale_out_problem(config, workers)
            if problem:
                raise ConfigError(problem)
            from botkit.bot import Bot
            from connectors.web.app import BOT_DIR_ENV, app_from_env, create_app
            from connectors.web.security import load_secret

            the_bot = Bot(config)
            report = asyncio.run(the_bot.ingest_if_needed())
            if report is not None:
                err_console.print(f"[dim]indexed the knowledge base ({getattr(report, 'chunks', '?')} chunks)[/]")
            load_secret(config)  # create <data_dir>/secret.key once, before any worker races for it
            base = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
            console.print(f"Serving [bold]{escape(config.name)}[/] at {base}  "
                          f"[dim](demo page /, widget /widget.js, API docs /docs, OpenAI-compatible /v1)[/]")
            if workers > 1 and not config.web.secret:
                err_console.print("[yellow]note:[/] set web.secret when several machines serve this bot "
                                  "(conversation tokens are signed with it)")
            from botkit.logging import configure, uvicorn_log_config

            configure(config)  # observability: JSON lines (observability.json_logs), secrets redacted
            log_config = uvicorn_log_config(log_level, json_lines=config.observability.json_logs)
            options: dict[str, Any] = {"host": host, "port": port, "log_level": log_level,
                                       "timeout_graceful_shutdown": 10, "log_config": log_config}
            if forwarded_allow_ips:
                options["forwarded_allow_ips"] = forwarded_allow_ips
            if workers == 1:
                uvicorn.run(create_app(the_bot, ingest_on_start=False, settle_heap=True), **options)
            else:
                os.environ[BOT_DIR_ENV] = str(config.root)  # read by app_from_env in each worker
                with _multiprocess_metrics():
                    uvicorn.run(f"{app_from_env.__module__}:{app_from_env.__name__}", factory=True,
                                workers=workers, **options)


@contextlib.contextmanager
def _multiprocess_metrics() -> Iterator[None]:
    """Workers share Prometheus counters through files in a fresh folder (prometheus-client's
    multiprocess mode, ``PROMETHEUS_MULTIPROC_DIR``), removed afterwards; a folder already
    set in the environment is used as it is."""
    from botkit.metrics import MULTIPROC_ENV

    if os.environ.get(MULTIPROC_ENV):
        yield
        return
    folder = tempfile.mkdtemp(prefix="botkit-metrics-")
    os.environ[MULTIPROC_ENV] = folder  # read by prometheus-client in each worker
    try:
        yield
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(folder, ignore_errors=True)
