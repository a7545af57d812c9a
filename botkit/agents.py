"""Agent accounts for the console, their sign-in sessions, and business hours.

Passwords are hashed with Argon2id (``argon2-cffi``); a session is a 256-bit random token
(the database keeps its SHA-256) with an expiry and a CSRF token of its own. Roles:
``admin`` sees every bot, ``agent`` only the bots in its ``bots`` list.

>>> agents = AgentDirectory.from_url(config.resolved_database_url)   # doctest: +SKIP
>>> agent = await agents.create("ana@example.com", "a long password", bots=["acme"])
>>> await agents.authenticate("ana@example.com", "a long password")

:func:`handoff_message` (from :mod:`botkit.business_hours`) is what the dialogue manager says
when it hands a conversation to a person: ``escalation.message`` during business hours,
else when someone will answer.
"""

from __future__ import annotations

import builtins
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from botkit._tables import agent_sessions, agents, reading, writing
from botkit.business_hours import handoff_message, is_open, next_opening
from botkit.errors import ConfigError, StoreError
from botkit.store.engine import EngineTables

AgentRole = Literal["agent", "admin"]
ROLES: tuple[AgentRole, ...] = ("agent", "admin")
MIN_PASSWORD_CHARS = 10
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}$")


@dataclass(frozen=True)
class Agent:
    """A person who answers handed-off conversations (never their password)."""

    id: str
    email: str
    role: AgentRole
    bots: tuple[str, ...]
    created_at: datetime
    disabled: bool = False

    def can_see(self, bot: str) -> bool:
        """Whether this agent may read and answer conversations of ``bot``."""
        return self.role == "admin" or bot in self.bots


@dataclass(frozen=True)
class Session:
    """A signed-in agent and the CSRF token of the session."""

    agent: Agent
    csrf: str
    expires_at: datetime


def _hasher() -> Any:
    try:
        from argon2 import PasswordHasher
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise ConfigError("agent passwords need argon2-cffi", hint="pip install argon2-cffi") from exc
    return PasswordHasher()


def hash_password(password: str) -> str:
    """The Argon2id hash of ``password`` (raises :class:`ValueError` when it is too short)."""
    if len(password) < MIN_PASSWORD_CHARS:
        raise ValueError(f"a password needs at least {MIN_PASSWORD_CHARS} characters")
    return str(_hasher().hash(password))


def verify_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches the stored hash (constant time)."""
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        return bool(_hasher().verify(password_hash, password))
    except (VerificationError, InvalidHashError):
        return False


_DUMMY_HASH: str | None = None


def _token_id(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def _utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=timezone.utc) if value is not None and value.tzinfo is None else value


def _to_agent(row: Any) -> Agent:
    created = _utc(row.created_at)
    assert created is not None
    return Agent(id=row.id, email=row.email, role=row.role, bots=tuple(row.bots or ()), created_at=created,
                 disabled=row.disabled_at is not None)


class AgentDirectory(EngineTables):
    """Agent accounts and console sessions in the bot's database.

    Takes an :class:`AsyncEngine` (no I/O in the constructor) or builds one with
    :meth:`from_url`. Database failures raise :class:`~botkit.errors.StoreError`.
    """

    async def create(
        self, email: str, password: str, *, role: AgentRole = "agent", bots: list[str] | tuple[str, ...] = ()
    ) -> Agent:
        """Create an account; :class:`ValueError` for a bad email, role or password,
        :class:`StoreError` when the email is taken."""
        email = email.strip().lower()
        if not _EMAIL.match(email):
            raise ValueError(f"{email!r} is not an email address")
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; known: {', '.join(ROLES)}")
        agent = Agent(id=secrets.token_hex(8), email=email, role=role, bots=tuple(sorted(set(bots))),
                      created_at=datetime.now(timezone.utc))
        values = {"id": agent.id, "email": email, "password_hash": hash_password(password), "role": role,
                  "bots": list(agent.bots), "created_at": agent.created_at, "disabled_at": None}
        try:
            async with writing(self.engine, "create an agent", passthrough=(IntegrityError,)) as conn:
                await conn.execute(agents.insert().values(values))
        except IntegrityError as exc:
            raise StoreError(f"an agent with email {email} already exists") from exc
        return agent

    async def get(self, agent_id: str) -> Agent | None:
        """The agent with this id, or ``None``."""
        async with reading(self.engine, "read an agent") as conn:
            row = (await conn.execute(select(agents).where(agents.c.id == agent_id))).first()
        return None if row is None else _to_agent(row)

    async def find(self, email: str) -> Agent | None:
        """The agent with this email, or ``None``."""
        async with reading(self.engine, "read an agent") as conn:
            row = (await conn.execute(select(agents).where(agents.c.email == email.strip().lower()))).first()
        return None if row is None else _to_agent(row)

    async def list(self) -> list[Agent]:
        """Every account, oldest first."""
        async with reading(self.engine, "list agents") as conn:
            rows = (await conn.execute(select(agents).order_by(agents.c.created_at, agents.c.email))).all()
        return [_to_agent(row) for row in rows]

    async def update(self, email: str, *, password: str | None = None, role: AgentRole | None = None,
                     bots: builtins.list[str] | None = None, disabled: bool | None = None) -> bool:
        """Change an account (a disabled one cannot sign in; its sessions end); ``False`` if unknown."""
        values: dict[str, Any] = {}
        if password is not None:
            values["password_hash"] = hash_password(password)
        if role is not None:
            if role not in ROLES:
                raise ValueError(f"unknown role {role!r}; known: {', '.join(ROLES)}")
            values["role"] = role
        if bots is not None:
            values["bots"] = sorted(set(bots))
        if disabled is not None:
            values["disabled_at"] = datetime.now(timezone.utc) if disabled else None
        if not values:
            return await self.find(email) is not None
        async with writing(self.engine, "update an agent") as conn:
            result = await conn.execute(update(agents).where(agents.c.email == email.strip().lower()).values(values))
            if result.rowcount and (password is not None or disabled):
                ids = select(agents.c.id).where(agents.c.email == email.strip().lower()).scalar_subquery()
                await conn.execute(delete(agent_sessions).where(agent_sessions.c.agent_id == ids))
        return bool(result.rowcount)

    async def remove(self, email: str) -> bool:
        """Delete an account (and its sessions and claims); ``False`` when unknown."""
        async with writing(self.engine, "remove an agent") as conn:
            result = await conn.execute(delete(agents).where(agents.c.email == email.strip().lower()))
        return bool(result.rowcount)

    async def authenticate(self, email: str, password: str) -> Agent | None:
        """The active agent with these credentials, else ``None`` (same work either way)."""
        global _DUMMY_HASH
        async with reading(self.engine, "check an agent's password") as conn:
            row = (await conn.execute(select(agents).where(agents.c.email == email.strip().lower()))).first()
        if row is None:
            _DUMMY_HASH = _DUMMY_HASH or hash_password("not a real password, only timing")
            verify_password(_DUMMY_HASH, password)
            return None
        if not verify_password(row.password_hash, password) or row.disabled_at is not None:
            return None
        return _to_agent(row)

    async def start_session(self, agent: Agent, *, hours: float) -> tuple[str, Session]:
        """Sign ``agent`` in for ``hours``: the session token (for the cookie) and the session."""
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        at = datetime.now(timezone.utc)
        expires = at + timedelta(hours=hours)
        async with writing(self.engine, "start a console session") as conn:
            await conn.execute(delete(agent_sessions).where(agent_sessions.c.expires_at < at))
            await conn.execute(agent_sessions.insert().values(
                id=_token_id(token), agent_id=agent.id, csrf=csrf, created_at=at, expires_at=expires))
        return token, Session(agent=agent, csrf=csrf, expires_at=expires)

    async def session(self, token: str | None, *, now: datetime | None = None) -> Session | None:
        """The live session of ``token`` (not expired, agent not disabled), else ``None``."""
        if not token:
            return None
        query = select(agent_sessions.c.csrf, agent_sessions.c.expires_at, agents).join(
            agents, agents.c.id == agent_sessions.c.agent_id).where(agent_sessions.c.id == _token_id(token))
        async with reading(self.engine, "read a console session") as conn:
            row = (await conn.execute(query)).first()
        expires = _utc(row.expires_at) if row is not None else None
        if row is None or expires is None or expires <= (now or datetime.now(timezone.utc)) or row.disabled_at:
            return None
        return Session(agent=_to_agent(row), csrf=row.csrf, expires_at=expires)

    async def end_session(self, token: str | None) -> None:
        """Sign out (idempotent)."""
        if token:
            async with writing(self.engine, "end a console session") as conn:
                await conn.execute(delete(agent_sessions).where(agent_sessions.c.id == _token_id(token)))


__all__ = [
    "Agent", "AgentDirectory", "AgentRole", "Session", "handoff_message", "hash_password", "is_open",
    "next_opening", "verify_password",
]
