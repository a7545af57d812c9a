"""Model backends: the :class:`Backend` interface, its value types and the registry.

Built-in kinds: ``openai``, ``transformers``, ``extractive``, ``langchain``,
``scripted``. Importing this package imports none of their client libraries.
"""

from __future__ import annotations

from botkit.backends.base import (
    Backend,
    ChatMessage,
    Completion,
    Done,
    Prompt,
    StreamEvent,
    TextDelta,
    Usage,
)
from botkit.backends.registry import create_backend, known_kinds, register_backend, unregister_backend
from botkit.backends.scripted import ScriptedBackend

__all__ = [
    "Backend",
    "ChatMessage",
    "Completion",
    "Done",
    "Prompt",
    "ScriptedBackend",
    "StreamEvent",
    "TextDelta",
    "Usage",
    "create_backend",
    "known_kinds",
    "register_backend",
    "unregister_backend",
]
