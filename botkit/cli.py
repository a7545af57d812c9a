"""The ``botkit`` command line: the composition root.

Each group of commands lives in its own module under :mod:`botkit.commands` and adds
itself to :data:`app` through ``register(app)``. This is the one module allowed to reach
up into ``connectors`` (to serve them).
"""

from __future__ import annotations

import importlib
import logging

import typer

app = typer.Typer(
    name="botkit",
    help="Build, run and evaluate customer-service chatbots.\n\n"
    "A bot is a directory with bot.yaml and knowledge/; every command takes --bot DIR "
    "(default: the current directory, or $BOTKIT_BOT).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Command modules, in the order their commands appear in --help.
COMMAND_MODULES = (
    "botkit.commands.init",
    "botkit.commands.knowledge",
    "botkit.commands.chat",
    "botkit.commands.db",
    "botkit.commands.transfer",
    "botkit.commands.serve",
    "botkit.commands.slack",
    "botkit.commands.keys",
    "botkit.commands.evaluate",
    "botkit.commands.agents",
    "botkit.commands.webhooks",
    "botkit.commands.report",
)

for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def main() -> None:
    """Entry point of the ``botkit`` script."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
