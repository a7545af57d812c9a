"""Alembic environment for botkit's schema.

botkit runs migrations programmatically (:mod:`botkit.store.migrate`): it passes an open
connection, already inside the transaction it owns, in ``config.attributes["connection"]``.
From the ``alembic`` command line (developers), the database comes from ``-x url=...`` or
``sqlalchemy.url``; see ``alembic.ini``. Autogenerate compares the tables registered on
``botkit.store.models.Base.metadata``: import the module that defines a new table below.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from botkit.store.models import VERSION_TABLE, Base

config = context.config
target_metadata = Base.metadata


def _only_known_tables(obj: object, name: str | None, kind: str, reflected: bool, compare_to: object) -> bool:
    """Autogenerate never proposes dropping a table whose model was not imported here."""
    return not (kind == "table" and reflected and compare_to is None)


def _configure_and_run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=_only_known_tables,
    )
    with context.begin_transaction():
        context.run_migrations()


def _url_from_command_line() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("give the database with: alembic -x url=sqlite:///dev.db ...")
    return url


async def _run_online(url: str) -> None:
    from botkit.store.engine import WRITE, create_engine

    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.execution_options(**{WRITE: True})
            async with connection.begin():
                await connection.run_sync(_configure_and_run)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    from botkit.store.urls import normalize_database_url

    context.configure(
        url=normalize_database_url(_url_from_command_line()),
        target_metadata=target_metadata,
        version_table=VERSION_TABLE,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()
elif config.attributes.get("connection") is not None:
    _configure_and_run(config.attributes["connection"])
else:
    asyncio.run(_run_online(_url_from_command_line()))
