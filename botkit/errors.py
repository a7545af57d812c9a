"""botkit's exception hierarchy.

One root, :class:`BotkitError`, one family per layer, and leaf classes that are only a
docstring. Third-party errors are translated at the boundary
(``raise BackendError(...) from exc``).

``user_safe`` marks messages that may be shown to an end user as they are; everything
else is for operators and logs only.
"""

from __future__ import annotations


class BotkitError(Exception):
    """Root of every error botkit raises on purpose."""

    user_safe: bool = False

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message} ({hint})")


class ConfigError(BotkitError):
    """The bot's configuration is missing, malformed or names an unknown part."""


class BackendError(BotkitError):
    """A model backend failed to produce a reply."""


class BackendTimeout(BackendError):
    """A backend call ran past its deadline."""


class BackendUnavailable(BackendError):
    """A backend cannot be reached or refuses service (rate limit, 5xx, open circuit)."""


class StoreError(BotkitError):
    """The conversation store failed."""


class StoreUnavailable(StoreError):
    """The conversation store's database cannot be reached right now; retry later."""


class ConversationLocked(StoreError):
    """Another turn of the same conversation held its lock past the wait limit."""


class RetrievalError(BotkitError):
    """The knowledge base could not be searched."""


class ConnectorError(BotkitError):
    """A connector could not translate or deliver a message."""


class InvalidMessage(BotkitError):
    """A user message was rejected (empty, too long, malformed)."""

    user_safe = True


__all__ = [
    "BackendError",
    "BackendTimeout",
    "BackendUnavailable",
    "BotkitError",
    "ConfigError",
    "ConnectorError",
    "ConversationLocked",
    "InvalidMessage",
    "RetrievalError",
    "StoreError",
    "StoreUnavailable",
]
