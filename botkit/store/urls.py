"""Database URL normalisation: what users write in ``database_url`` to what SQLAlchemy needs.

Users write the URLs they know (``sqlite:///data/botkit.db``,
``postgresql://user@host:5432/botkit``, Heroku-style ``postgres://``); botkit always
talks to the database through its async drivers, aiosqlite and asyncpg.
"""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from botkit.errors import ConfigError

SUPPORTED_SCHEMES = ("sqlite", "postgresql", "postgres")

_SQLITE_DRIVERS = {"sqlite", "sqlite+aiosqlite", "sqlite+pysqlite"}
_POSTGRES_DRIVERS = {"postgresql", "postgres", "postgresql+asyncpg", "postgres+asyncpg"}
_EXAMPLES = "sqlite:///data/botkit.db or postgresql://user@127.0.0.1:5432/botkit"


def normalize_database_url(url: str | URL) -> URL:
    """Return ``url`` with botkit's async driver, or raise :class:`ConfigError`.

    * ``sqlite:///path`` (and ``sqlite+aiosqlite:///path``) → ``sqlite+aiosqlite:///path``
    * ``postgresql://``, ``postgres://``, ``postgresql+asyncpg://`` → ``postgresql+asyncpg://``;
      libpq's ``sslmode=`` query parameter is passed to asyncpg as ``ssl=``.

    In-memory SQLite is refused: every connection of the pool would see its own empty
    database. Any other scheme or driver is a :class:`ConfigError` naming ``database_url``.
    """
    raw = url if isinstance(url, URL) else str(url).strip()
    try:
        parsed = raw if isinstance(raw, URL) else make_url(raw)
    except ArgumentError as exc:
        raise ConfigError(
            f"database_url: cannot parse {_mask(str(raw))!r}",
            hint=f"use a URL such as {_EXAMPLES}",
        ) from exc
    name = parsed.drivername.lower()
    if name in _SQLITE_DRIVERS:
        database = parsed.database or ""
        if database in ("", ":memory:") or "mode=memory" in database:
            raise ConfigError(
                "database_url: in-memory SQLite is not supported (each connection would see its own empty database)",
                hint="use a file such as sqlite:///data/botkit.db",
            )
        return parsed.set(drivername="sqlite+aiosqlite")
    if name in _POSTGRES_DRIVERS:
        query = dict(parsed.query)
        sslmode = query.pop("sslmode", None)
        if sslmode is not None and "ssl" not in query:
            query["ssl"] = sslmode
        return parsed.set(drivername="postgresql+asyncpg", query=query)
    scheme = name.split("+", 1)[0]
    if scheme in ("sqlite", "postgresql", "postgres"):
        raise ConfigError(
            f"database_url: the driver {parsed.drivername!r} is not supported "
            f"(botkit uses aiosqlite for SQLite and asyncpg for PostgreSQL)",
            hint=f"write the URL without a driver, e.g. {_EXAMPLES}",
        )
    raise ConfigError(
        f"database_url: unsupported database {parsed.drivername!r}; "
        f"supported schemes: {', '.join(s + '://' for s in SUPPORTED_SCHEMES)}",
        hint=f"e.g. {_EXAMPLES}",
    )


def is_sqlite(url: URL) -> bool:
    """Whether a (normalised) URL points to SQLite."""
    return url.get_backend_name() == "sqlite"


def display_url(url: str | URL) -> str:
    """The URL with its password hidden, for messages and logs."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    return _mask(url)


def _mask(raw: str) -> str:
    try:
        return make_url(raw).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"
