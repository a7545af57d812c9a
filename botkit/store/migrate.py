"""Apply botkit's Alembic migrations programmatically.

The migration scripts ship inside the package (``botkit/migrations``). The store calls
:func:`ensure_schema` when it opens; ``botkit db upgrade`` calls :func:`upgrade`. Both
run Alembic on the async engine through ``connection.run_sync``, inside one transaction
botkit owns, so an upgrade is all or nothing (DDL is transactional on SQLite and
PostgreSQL). Concurrent first use by several processes is serialised: PostgreSQL takes an
advisory lock for the transaction; SQLite's ``BEGIN IMMEDIATE`` write lock does the same.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from botkit.errors import StoreError
from botkit.store.engine import WRITE, translating
from botkit.store.models import VERSION_TABLE

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.engine import Connection

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"

# Two-key advisory lock ("botk", 1) guarding schema upgrades on PostgreSQL.
_PG_MIGRATION_LOCK = (0x626F746B, 1)


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic :class:`Config` for the packaged scripts, optionally bound to a connection."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@lru_cache(maxsize=1)
def head_revision() -> str:
    """The revision the packaged migrations lead to."""
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    if len(heads) != 1:  # pragma: no cover - a packaging mistake
        raise StoreError(f"botkit's migrations have {len(heads)} heads ({', '.join(heads)}); expected one")
    return heads[0]


async def current_revision(engine: AsyncEngine) -> str | None:
    """The database's schema revision, or ``None`` when botkit's schema is absent."""
    async with translating("read the schema version", engine.url), engine.connect() as connection:
        return await connection.run_sync(_current)


async def ensure_schema(engine: AsyncEngine) -> bool:
    """Upgrade the database to the packaged head if it is behind; return whether it was.

    Cheap when the schema is current (one read). Raises :class:`StoreError` when the
    database was migrated by a newer botkit than this one.
    """
    head = head_revision()
    current = await current_revision(engine)
    if current == head:
        return False
    _check_known(current, engine)
    return await upgrade(engine)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> bool:
    """Upgrade the schema to ``revision`` under the migration lock; return whether it changed."""
    async with translating("upgrade the database schema", engine.url), engine.connect() as connection:
        await connection.execution_options(**{WRITE: True})
        async with connection.begin():
            if connection.dialect.name == "postgresql":
                await connection.execute(
                    text("SELECT pg_advisory_xact_lock(:a, :b)"),
                    {"a": _PG_MIGRATION_LOCK[0], "b": _PG_MIGRATION_LOCK[1]},
                )
            before = await connection.run_sync(_current)
            _check_known(before, engine)
            await connection.run_sync(_upgrade, revision)
            after = await connection.run_sync(_current)
    return before != after


def _current(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    heads = context.get_current_heads()
    return heads[0] if heads else None


def _upgrade(connection: Connection, revision: str) -> None:
    from alembic import command

    command.upgrade(alembic_config(connection), revision)


def _check_known(revision: str | None, engine: AsyncEngine) -> None:
    if revision is None:
        return
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    try:
        ScriptDirectory.from_config(alembic_config()).get_revision(revision)
    except CommandError as exc:
        raise StoreError(
            f"the database's schema is at revision {revision!r}, which this botkit does not know "
            f"(its newest is {head_revision()!r}): it was migrated by a newer botkit",
            hint="upgrade botkit on this machine, or point database_url at another database",
        ) from exc
