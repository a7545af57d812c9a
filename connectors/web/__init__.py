"""The web connector: HTTP API + Server-Sent Events, the embeddable widget, and an
OpenAI-compatible API, served by a FastAPI app built with :func:`create_app`.

Modules: ``protocol`` (schemas), ``api`` / ``openai_compat`` (routes), ``service``
(translation between HTTP and the bot), ``security`` (keys, tokens, limits, headers),
``deps`` (route dependencies), ``app`` (the factory).
"""

from __future__ import annotations

from typing import Any

__all__ = ["app_from_env", "create_app"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from connectors.web import app

        return getattr(app, name)
    raise AttributeError(name)
