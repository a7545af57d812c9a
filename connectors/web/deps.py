"""Shared state of one web app and the FastAPI dependencies that guard its routes.

Dependencies are ``async def`` on purpose: FastAPI runs plain ``def`` dependencies in a
thread pool, a thread hop per dependency per request.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from botkit.bot import Bot
from botkit.config import WebSettings
from botkit.keys import ApiKey, ApiKeys
from connectors.web.security import ConversationTokens, OriginPolicy, RateLimiter, check_key


@dataclass
class WebState:
    """Everything the routes need, built once by :func:`connectors.web.app.create_app`."""

    bot: Bot
    settings: WebSettings
    tokens: ConversationTokens
    public_key: str
    origins: OriginPolicy
    ip_limiter: RateLimiter
    conversation_limiter: RateLimiter
    max_message_chars: int
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _keys: ApiKeys | None = None

    @property
    def keys(self) -> ApiKeys:
        """API keys, in the bot's database (migrated when the bot's store opened)."""
        if self._keys is None:
            self._keys = ApiKeys.from_url(
                self.bot.config.resolved_database_url, max_connections=self.bot.config.database_pool_size
            )
        return self._keys

    async def aclose(self) -> None:
        """Release what the web layer opened (not the bot)."""
        if self._keys is not None:
            await self._keys.aclose()
            self._keys = None


async def get_state(request: Request) -> WebState:
    """The app's :class:`WebState`."""
    state: WebState = request.app.state.web
    return state


State = Annotated[WebState, Depends(get_state)]
_bearer = HTTPBearer(auto_error=False, description="A conversation token, or an API key from `botkit keys create`.")
_bot_key = APIKeyHeader(name="X-Bot-Key", auto_error=False, description="The bot's public key (web.public_key).")
Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def client_ip(request: Request) -> str:
    """The client's address (uvicorn applies X-Forwarded-For from trusted proxies)."""
    return request.client.host if request.client else "unknown"


def too_many(seconds: float, what: str) -> HTTPException:
    """A 429 with ``Retry-After``."""
    headers = {"Retry-After": RateLimiter.retry_after(seconds)}
    return HTTPException(429, f"too many requests {what}; retry later", headers)


async def limit_ip(request: Request, state: State) -> None:
    """Rate limit per client IP (``web.rate_limit_per_minute``)."""
    wait = state.ip_limiter.hit(client_ip(request))
    if wait is not None:
        raise too_many(wait, "from this address")


def own_origin(request: Request) -> str:
    """The origin this request was addressed to (scheme + Host header)."""
    return str(request.base_url).rstrip("/")


def check_origin(request: Request, state: State) -> None:
    """403 for a browser ``Origin`` that is neither allowed nor the server's own."""
    if not state.origins.allows(request.headers.get("origin"), own_origin(request)):
        raise HTTPException(403, "this origin is not allowed to use the bot (web.allowed_origins)")


async def require_public_key(
    request: Request, state: State, key: Annotated[str | None, Depends(_bot_key)]
) -> None:
    """The ``X-Bot-Key`` header must be the bot's public key, sent from an allowed origin."""
    check_origin(request, state)
    if not check_key(state.public_key, key):
        raise HTTPException(401, "missing or wrong X-Bot-Key", {"WWW-Authenticate": "X-Bot-Key"})


async def conversation_access(
    request: Request,
    state: State,
    credentials: Bearer,
    conversation_id: Annotated[str, Path(min_length=1, max_length=64)],
) -> str:
    """The conversation id, once its token (``Authorization: Bearer``) checks out."""
    check_origin(request, state)
    if credentials is None:
        raise HTTPException(401, "missing conversation token", {"WWW-Authenticate": "Bearer"})
    if not state.tokens.verify(conversation_id, credentials.credentials):
        raise HTTPException(403, "this token does not grant access to this conversation")
    return conversation_id


async def require_api_key(state: State, credentials: Bearer) -> ApiKey:
    """An active API key (``Authorization: Bearer bk_...``), else 401."""
    key = await state.keys.verify(credentials.credentials if credentials else None)
    if key is None:
        raise HTTPException(401, "missing, wrong or revoked API key", {"WWW-Authenticate": "Bearer"})
    return key


ConversationId = Annotated[str, Depends(conversation_access)]
AdminKey = Annotated[ApiKey, Depends(require_api_key)]
