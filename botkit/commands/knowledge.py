"""Knowledge commands: ``ingest``, ``search``, ``kb stats`` and ``eval-retrieval``.

The boundary between the CLI and the knowledge package: knowledge errors are translated
into botkit's (:class:`ConfigError` for settings and model problems, :class:`RetrievalError`
for an unreachable index) and printed on one line with exit status 2. The knowledge
modules (and through them torch and chromadb) are imported when a command runs, so
``botkit --help`` stays fast.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from botkit.commands._common import BotOption, cli_errors, console, err_console, load_bot_config, print_json
from botkit.config import BotConfig
from botkit.errors import ConfigError, RetrievalError

if TYPE_CHECKING:
    from knowledge.index import KnowledgeBase

MODES = ("hybrid", "vector", "lexical")


@contextmanager
def knowledge_errors() -> Iterator[None]:
    """Translate knowledge errors to botkit errors, printed by :func:`cli_errors` (exit 2)."""
    from knowledge.errors import (
        EmbeddingModelError,
        IndexUnavailable,
        KnowledgeConfigError,
        KnowledgeError,
        SourceError,
    )

    with cli_errors():
        try:
            yield
        except (EmbeddingModelError, KnowledgeConfigError, SourceError) as exc:
            raise ConfigError(str(exc)) from exc
        except IndexUnavailable as exc:
            raise RetrievalError(str(exc)) from exc
        except KnowledgeError as exc:
            raise RetrievalError(str(exc)) from exc


def open_knowledge_base(config: BotConfig, *, rebuild: bool = False) -> KnowledgeBase:
    """The bot's knowledge base (loads the embedding model)."""
    from knowledge.index import KnowledgeBase

    return KnowledgeBase.open(
        config.knowledge, config.root, config.data_path, chroma_path=config.chroma_path, rebuild=rebuild
    )


def _check_mode(mode: str | None) -> str | None:
    if mode is not None and mode not in MODES:
        err_console.print(f"[bold red]error:[/] unknown --mode {mode!r}; known modes: {', '.join(MODES)}")
        raise typer.Exit(2)
    return mode


def _scope(paths: list[str], config: BotConfig) -> list[str]:
    """PATHS given on the command line → source names relative to the knowledge folder."""
    folder = config.knowledge_path.resolve()
    names: list[str] = []
    for raw in paths:
        if "://" in raw:
            names.append(raw)
            continue
        candidate = Path(raw).expanduser()
        path = candidate if candidate.is_absolute() else Path.cwd() / candidate
        if path.exists():
            try:
                names.append(path.resolve().relative_to(folder).as_posix())
            except ValueError:
                raise ConfigError(f"{raw} is not inside the knowledge folder {folder}") from None
        else:
            names.append(candidate.as_posix().strip("/"))  # a source name (one that was deleted, say)
    return names


def register(app: typer.Typer) -> None:
    """Add the knowledge commands to the CLI."""
    kb_app = typer.Typer(help="Inspect the knowledge base.", no_args_is_help=True)
    app.add_typer(kb_app, name="kb")

    @app.command()
    def ingest(
        paths: list[str] = typer.Argument(None, help="Only these files or folders of the knowledge folder."),
        bot: Path = BotOption,
        rebuild: bool = typer.Option(False, "--rebuild", help="Drop the index and embed everything again."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
    ) -> None:
        """Bring the index in line with the knowledge folder (only changed sources are embedded)."""
        config = load_bot_config(bot)
        with knowledge_errors():
            only = _scope(paths or [], config)
            folder = config.knowledge_path
            if not folder.is_dir() and not (config.knowledge.urls or config.knowledge.sitemaps):
                raise ConfigError(f"knowledge folder not found: {folder}", hint="create it or set knowledge.path in bot.yaml")
            kb = open_knowledge_base(config, rebuild=rebuild)
            try:
                report = _ingest_with_progress(kb, rebuild=rebuild, only=only, quiet=as_json)
            finally:
                kb.close()
        if as_json:
            print_json(report.to_dict())
            return
        table = Table(title=f"Ingested {config.knowledge_path}", show_header=True)
        for column in ("added", "updated", "removed", "unchanged", "failed", "chunks", "seconds"):
            table.add_column(column, justify="right")
        table.add_row(
            *(str(getattr(report, c)) for c in ("added", "updated", "removed", "unchanged")),
            str(len(report.failed)), str(report.chunks), f"{report.seconds:.1f}",
        )
        console.print(table)
        for failure in report.failed:
            console.print(f"[yellow]failed[/] {failure['source']}: {failure['reason']}", highlight=False)

    @app.command()
    def search(
        query: str = typer.Argument(..., help="What to look for."),
        bot: Path = BotOption,
        k: int = typer.Option(None, "--k", "-k", min=1, max=100, help="Passages to show (default: knowledge.top_k)."),
        mode: str = typer.Option(None, "--mode", help="hybrid, vector or lexical (default: hybrid when knowledge.hybrid)."),
        as_json: bool = typer.Option(False, "--json", help="Print a JSON list of passages."),
    ) -> None:
        """Search the knowledge base as the bot does."""
        config = load_bot_config(bot)
        _check_mode(mode)
        with knowledge_errors():
            kb = open_knowledge_base(config)
            try:
                empty = kb.is_empty()
                passages = kb.retriever.retrieve(query, k=k, mode=mode)  # type: ignore[arg-type]
            finally:
                kb.close()
        if as_json:
            print_json([p.to_dict() for p in passages])
            return
        if empty:
            err_console.print(f"the knowledge base is empty: run `botkit ingest --bot {bot}` first")
        if not passages:
            console.print("No relevant passage (nothing above knowledge.score_threshold).")
        for rank, passage in enumerate(passages, start=1):
            where = passage.source + (f" › {passage.section}" if passage.section else "")
            console.print(f"[bold]{rank}. {passage.title}[/]  [dim]{where}  score {passage.score:.3f}[/]", highlight=False)
            snippet = " ".join(passage.text.split())
            console.print("   " + (snippet[:300] + "…" if len(snippet) > 300 else snippet), highlight=False, markup=False)

    @kb_app.command("stats")
    def stats(
        bot: Path = BotOption,
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    ) -> None:
        """Sources, chunks, formats, model and index location (does not load the model)."""
        from knowledge.index import read_stats

        config = load_bot_config(bot)
        with knowledge_errors():
            result = read_stats(config.knowledge, config.data_path, chroma_path=config.chroma_path)
        data = result.to_dict()
        if as_json:
            print_json(data)
            return
        table = Table(show_header=False, box=None)
        table.add_row("sources", str(result.sources))
        table.add_row("chunks", str(result.chunks))
        table.add_row("formats", ", ".join(f"{k}: {v}" for k, v in result.formats.items()) or "-")
        table.add_row("model", f"{result.model} ({result.dimension} dims)" if result.dimension else result.model)
        table.add_row("index", result.index)
        table.add_row("lexical index", result.lexical_db)
        table.add_row("last ingest", _describe_last(result.last_ingest))
        console.print(table)

    @app.command("eval-retrieval")
    def eval_retrieval(
        questions: Path = typer.Argument(..., help="JSONL file: question, history, expected_sources, kind."),
        bot: Path = BotOption,
        k: int = typer.Option(5, "--k", "-k", min=1, max=100, help="Passages retrieved per question (MRR cut-off)."),
        mode: str = typer.Option(None, "--mode", help="hybrid, vector or lexical."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    ) -> None:
        """hit@1, hit@3, hit@5 and MRR of retrieval over a question set."""
        from knowledge.evaluation import evaluate, load_questions

        config = load_bot_config(bot)
        _check_mode(mode)
        with knowledge_errors():
            items = load_questions(questions)
            kb = open_knowledge_base(config)
            try:
                overall, by_kind = evaluate(
                    lambda q: kb.retriever.retrieve(q.query, k=k, mode=mode, message=q.question),  # type: ignore[arg-type]
                    items,
                )
            finally:
                kb.close()
        if as_json:
            print_json(overall.to_dict())
            return
        table = Table(title=f"Retrieval quality ({mode or ('hybrid' if config.knowledge.hybrid else 'vector')}, k={k})")
        for column in ("kind", "n", "hit@1", "hit@3", "hit@5", "mrr"):
            table.add_column(column, justify="right" if column != "kind" else "left")
        for name, metrics in [*by_kind.items(), ("all", overall)]:
            row = metrics.to_dict()
            table.add_row(name, str(row["n"]), *(f"{row[c]:.3f}" for c in ("hit@1", "hit@3", "hit@5", "mrr")))
        console.print(table)


def _ingest_with_progress(kb: KnowledgeBase, *, rebuild: bool, only: list[str], quiet: bool) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if quiet:
        return kb.ingest(rebuild=rebuild, only=only or None)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task("ingesting", total=None)

        def tell(event: Any) -> None:
            bar.update(task, total=event.total, completed=event.done, description=f"{event.status:>9} {event.source}")

        return kb.ingest(progress=tell, rebuild=rebuild, only=only or None)


def _describe_last(last: dict[str, Any] | None) -> str:
    if not last:
        return "never"
    when = dt.datetime.fromtimestamp(float(last.get("at", 0))).isoformat(timespec="seconds")
    report = last.get("report") or {}
    summary = ", ".join(f"{k} {report.get(k, 0)}" for k in ("added", "updated", "removed", "unchanged"))
    return f"{when} ({summary}, failed {len(report.get('failed', []))})"
