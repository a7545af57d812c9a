"""The agent console at ``/console``: handoff queue, live conversations, analytics, webhooks.

``connectors.web.app.create_app`` calls :func:`mount` (when ``console.enabled``); any
Starlette/FastAPI app serving a bot can do the same::

    from connectors.web.console import mount
    mount(app, bot)

The app's lifespan then also registers the webhook outbox as an observer of the bot and
runs the webhook delivery worker (``webhooks.deliver``). Accounts come from
``botkit agents create``. Modules: ``auth`` (sessions, CSRF), ``views`` (HTML),
``routes``, ``state``; ``static/`` holds ``console.js`` and ``console.css``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from importlib import resources
from typing import Any

from fastapi.staticfiles import StaticFiles
from starlette.applications import Starlette

from botkit.agents import AgentDirectory
from botkit.bot import Bot
from botkit.store.engine import create_engine
from botkit.webhooks import Webhooks
from botkit.webhooks_delivery import DeliveryWorker
from connectors.web.console.auth import cookie_key
from connectors.web.console.state import ConsoleState
from connectors.web.security import RateLimiter, load_secret

STATIC = resources.files("connectors.web.console") / "static"

__all__ = ["ConsoleState", "mount"]


def mount(app: Starlette, bot: Bot, *, secret: bytes | None = None) -> ConsoleState:
    """Add the console's routes and static files to ``app``; return its state.

    No I/O here: the database engine connects on first use, and the delivery worker starts
    with the app's lifespan. ``secret`` (default: the web connector's server secret) signs
    the session cookies.
    """
    from connectors.web.console import routes

    config = bot.config
    engine = create_engine(config.resolved_database_url, max_connections=config.database_pool_size)
    webhooks = Webhooks(engine)
    state = ConsoleState(
        bot=bot, settings=config.console, engine=engine, cookie_key=cookie_key(secret or load_secret(config)),
        agents=AgentDirectory(engine), webhooks=webhooks, worker=DeliveryWorker(webhooks, config.webhooks),
        login_limiter=RateLimiter(config.console.login_attempts_per_minute),
    )
    app.state.console = state
    include = getattr(app, "include_router", None)
    if include is not None:
        include(routes.router)
    else:  # a plain Starlette app
        app.router.routes.extend(routes.router.routes)
    app.mount("/console/static", StaticFiles(directory=str(STATIC)), name="console-static")
    inner: Callable[[Any], AbstractAsyncContextManager[Any]] = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(scope_app: Any) -> AsyncIterator[Any]:
        async with inner(scope_app) as inner_state:
            bot.observers.append(webhooks.observer)
            if config.webhooks.deliver:
                state.worker.start()
            try:
                yield inner_state
            finally:
                if webhooks.observer in bot.observers:
                    bot.observers.remove(webhooks.observer)
                await state.worker.aclose()
                await engine.dispose()

    app.router.lifespan_context = lifespan
    return state
