"""API keys for the management and OpenAI-compatible endpoints.

A key looks like ``bk_<id>_<secret>``: ``id`` is public (listed, used to revoke), the
secret is 256 random bits shown once, when the key is created. The database keeps only
the SHA-256 of the whole key (a fast hash is enough for a high-entropy secret), compared
in constant time. Keys live in the ``api_keys`` table of the bot's database (migration
``0002``).

>>> keys = ApiKeys.from_url(config.resolved_database_url)
>>> key, secret = await keys.create(name="ci")
>>> (await keys.verify(secret)).id == key.id
True
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import Column, DateTime, String, Table, select, update
from sqlalchemy.engine import Row

from botkit.store.engine import WRITE, EngineTables, translating
from botkit.store.models import Base

KEY_PREFIX = "bk_"
_KEY_RE = re.compile(r"^bk_([0-9a-f]{12})_([A-Za-z0-9_-]{20,})$")

api_keys = Table(
    "api_keys",
    Base.metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("secret_hash", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)


@dataclass(frozen=True)
class ApiKey:
    """A stored API key (never its secret)."""

    id: str
    name: str
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        """Whether the key still authenticates."""
        return self.revoked_at is None


def hash_key(key: str) -> str:
    """The stored form of a key: hex SHA-256."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class ApiKeys(EngineTables):
    """Create, list, revoke and verify API keys in the bot's database.

    Takes an :class:`AsyncEngine` on the bot's database (no I/O in the constructor), or
    builds one with :meth:`from_url`; each method is one unit of work. Database failures
    raise :class:`~botkit.errors.StoreUnavailable` or :class:`~botkit.errors.StoreError`.
    """

    async def create(self, *, name: str = "default") -> tuple[ApiKey, str]:
        """Create a key; return it and its full secret (shown once, never stored)."""
        key_id = secrets.token_hex(6)
        secret = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        key = ApiKey(id=key_id, name=name[:100] or "default", created_at=datetime.now(timezone.utc))
        async with translating("create an API key", self.engine.url):
            async with self.engine.connect() as conn:
                await conn.execution_options(**{WRITE: True})
                async with conn.begin():
                    await conn.execute(
                        api_keys.insert().values(
                            id=key.id, name=key.name, secret_hash=hash_key(secret), created_at=key.created_at
                        )
                    )
        return key, secret

    async def list(self, *, include_revoked: bool = True) -> list[ApiKey]:
        """All keys, oldest first."""
        query = select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
        if not include_revoked:
            query = query.where(api_keys.c.revoked_at.is_(None))
        async with translating("list API keys", self.engine.url):
            async with self.engine.connect() as conn:
                rows = (await conn.execute(query)).all()
        return [_to_key(row) for row in rows]

    async def revoke(self, key_id: str) -> bool:
        """Revoke a key by id; ``False`` when no active key has that id."""
        async with translating("revoke an API key", self.engine.url):
            async with self.engine.connect() as conn:
                await conn.execution_options(**{WRITE: True})
                async with conn.begin():
                    result = await conn.execute(
                        update(api_keys)
                        .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                        .values(revoked_at=datetime.now(timezone.utc))
                    )
        return bool(result.rowcount)

    async def verify(self, presented: str | None) -> ApiKey | None:
        """The active key matching ``presented`` (a full ``bk_...`` secret), else ``None``."""
        match = _KEY_RE.match(presented or "")
        if match is None:
            return None
        query = select(api_keys).where(api_keys.c.id == match.group(1))
        async with translating("check an API key", self.engine.url):
            async with self.engine.connect() as conn:
                row = (await conn.execute(query)).first()
        if row is None or not hmac.compare_digest(row.secret_hash, hash_key(presented or "")):
            return None
        key = _to_key(row)
        return key if key.active else None


def _utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; botkit stores UTC."""
    return value.replace(tzinfo=timezone.utc) if value is not None and value.tzinfo is None else value


def _to_key(row: Row) -> ApiKey:
    created = _utc(row.created_at)
    assert created is not None
    return ApiKey(id=row.id, name=row.name, created_at=created, revoked_at=_utc(row.revoked_at))


__all__ = ["ApiKey", "ApiKeys", "hash_key"]
