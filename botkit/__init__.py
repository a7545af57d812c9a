"""botkit: customer-service chatbots grounded in your help centre.

The front door is :class:`botkit.Bot` (``from botkit import Bot``). Heavy dependencies
(torch, chromadb, transformers) are imported only when a bot needs them.
"""

from __future__ import annotations

from botkit.config import BotConfig, load_config
from botkit.errors import (
    BackendError,
    BotkitError,
    ConfigError,
    ConnectorError,
    InvalidMessage,
    RetrievalError,
    StoreError,
)

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "BotConfig",
    "BotkitError",
    "ConfigError",
    "ConnectorError",
    "InvalidMessage",
    "RetrievalError",
    "StoreError",
    "__version__",
    "load_config",
]
