"""Helpers shared by the CLI command modules."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console

from botkit.config import BotConfig, load_config
from botkit.errors import BotkitError

console = Console()
err_console = Console(stderr=True)

T = TypeVar("T")

BotOption = typer.Option(
    Path("."),
    "--bot",
    "-b",
    envvar="BOTKIT_BOT",
    help="Bot directory (holds bot.yaml and knowledge/).",
    show_default=True,
)


def load_bot_config(bot: Path) -> BotConfig:
    """Load the bot's config or exit with its error on one clear line."""
    with cli_errors():
        return load_config(bot)


@contextmanager
def cli_errors() -> Iterator[None]:
    """Turn botkit errors into a clear message and exit status 2, never a traceback."""
    try:
        yield
    except BotkitError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True, soft_wrap=True)
        raise typer.Exit(2) from None


def print_json(value: Any) -> None:
    """Print one JSON document on stdout (no colour, stable for scripts)."""
    sys.stdout.write(json.dumps(value, ensure_ascii=False, indent=2, default=str) + "\n")
    sys.stdout.flush()


def run_sync(factory: Callable[[], T]) -> T:
    """Run a callable under :func:`cli_errors`."""
    with cli_errors():
        return factory()
