"""``botkit init DIR``: create a new bot directory."""

from __future__ import annotations

import secrets
from pathlib import Path

import typer

from botkit.commands._common import console, err_console

BOT_YAML_TEMPLATE = """\
# botkit bot configuration. Every key can be overridden by an environment variable
# BOTKIT_<KEY> (nested keys joined with "__"), e.g. BOTKIT_DATABASE_URL,
# BOTKIT_KNOWLEDGE__CHROMA_URL, BOTKIT_BACKENDS='["openai:gpt-4o-mini", "extractive"]'.
# The keys are documented in the README ("Configuration").

name: {name}
persona: You are {name}'s friendly, concise customer-support assistant.

# Fallback chain of answer backends: the first that answers wins.
# "extractive" needs no model and no API key.
backends: ["extractive"]

# State (SQLite database and vector index) lives here, relative to this folder.
data_dir: data
# database_url: postgresql://user@127.0.0.1:5432/botkit

knowledge:
  path: knowledge          # Markdown, HTML, PDF, text and FAQ files (CSV/JSON/YAML)
  urls: []                 # web pages to ingest
  sitemaps: []             # sitemaps whose pages are ingested
  # chroma_url: http://127.0.0.1:8001   # a Chroma server instead of the local folder

web:
  public_key: {public_key}
  allowed_origins: []      # origins allowed to embed the widget (the server's own is always allowed)
  # suggestions:           # questions the widget offers until the visitor's first message
  #   - When are you open?
"""

SAMPLE_ARTICLE = """\
# Welcome

This is a sample article. Put your help-centre articles in this folder as Markdown,
HTML, PDF or text files, or question/answer pairs in a CSV file with `question,answer`
columns, then run `botkit ingest`.

## Opening hours

Our support team answers Monday to Friday, 9:00 to 17:00.
"""


def register(app: typer.Typer) -> None:
    """Add ``init`` to the CLI."""

    @app.command()
    def init(
        directory: Path = typer.Argument(..., help="Folder to create the bot in."),
        name: str | None = typer.Option(None, help="The bot's name (default: the folder's name)."),
        force: bool = typer.Option(False, "--force", help="Overwrite an existing bot.yaml."),
    ) -> None:
        """Create a bot directory with bot.yaml and knowledge/."""
        target = directory.expanduser().resolve()
        config_path = target / "bot.yaml"
        if config_path.exists() and not force:
            err_console.print(f"[bold red]error:[/] {config_path} already exists (use --force to overwrite it)")
            raise typer.Exit(2)
        (target / "knowledge").mkdir(parents=True, exist_ok=True)
        bot_name = name or target.name
        public_key = "pk_" + secrets.token_urlsafe(24)
        config_path.write_text(
            BOT_YAML_TEMPLATE.format(name=_yaml_scalar(bot_name), public_key=public_key), encoding="utf-8"
        )
        sample = target / "knowledge" / "welcome.md"
        if not any((target / "knowledge").iterdir()):
            sample.write_text(SAMPLE_ARTICLE, encoding="utf-8")
        console.print(f"Created bot [bold]{bot_name}[/] in {target}")
        console.print(f"  next: add articles to {target / 'knowledge'} and run `botkit ingest --bot {directory}`")


def _yaml_scalar(value: str) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)
