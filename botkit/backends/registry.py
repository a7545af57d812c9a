"""Find backend classes by kind and build backends from config strings.

A backend spec is ``kind`` or ``kind:model``; everything after the first ``:`` is the
model, so paths and import strings may hold more colons:

- ``openai:gpt-4o-mini`` (any OpenAI-compatible server via ``openai.base_url``)
- ``transformers:/models/qwen2.5-0.5b-instruct`` or a model id already in the local cache
- ``extractive`` (no model)
- ``langchain:<provider>:<model>`` or ``langchain:<module>:<factory>``
- ``scripted`` (tests)

Kinds come from the ``botkit.backends`` entry-point group; the built-ins are registered
there by botkit's own ``pyproject.toml`` exactly as a plugin registers, and
:data:`BUILTIN_BACKENDS` holds the same ``module:Class`` strings in case the
distribution metadata is missing (running from a source tree). Apps and tests can add
kinds with :func:`register_backend`.
"""

from __future__ import annotations

import threading
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING

from botkit.errors import ConfigError

if TYPE_CHECKING:
    from botkit.backends.base import Backend
    from botkit.config import BotConfig

GROUP = "botkit.backends"

BUILTIN_BACKENDS: dict[str, str] = {
    "openai": "botkit.backends.openai_backend:OpenAIBackend",
    "transformers": "botkit.backends.transformers_backend:TransformersBackend",
    "extractive": "botkit.backends.extractive:ExtractiveBackend",
    "langchain": "botkit.backends.langchain_backend:LangChainBackend",
    "scripted": "botkit.backends.scripted:ScriptedBackend",
}

# The extra that installs each built-in's client library, for error messages.
_EXTRAS = {"openai": "openai", "langchain": "langchain"}

_registered: dict[str, type[Backend]] = {}
_lock = threading.Lock()


def _entry_points() -> dict[str, EntryPoint]:
    found = {ep.name: ep for ep in entry_points(group=GROUP)}
    for kind, value in BUILTIN_BACKENDS.items():
        found.setdefault(kind, EntryPoint(name=kind, value=value, group=GROUP))
    return found


def known_kinds() -> list[str]:
    """Every backend kind available: entry points, built-ins and registered classes."""
    return sorted(set(_entry_points()) | set(_registered))


def register_backend(kind: str, cls: type[Backend]) -> None:
    """Make ``cls`` available under ``kind`` (overrides an entry point of that name)."""
    from botkit.backends.base import Backend

    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise TypeError(f"register_backend({kind!r}, ...): {cls!r} is not a Backend subclass")
    if not kind or ":" in kind:
        raise ValueError(f"invalid backend kind {kind!r}: it must be non-empty and contain no ':'")
    with _lock:
        _registered[kind] = cls


def unregister_backend(kind: str) -> None:
    """Remove a kind added by :func:`register_backend` (no error if absent)."""
    with _lock:
        _registered.pop(kind, None)


def backend_class(kind: str) -> type[Backend]:
    """The class registered for ``kind``; :class:`ConfigError` listing the known kinds."""
    from botkit.backends.base import Backend

    with _lock:
        cls = _registered.get(kind)
    if cls is not None:
        return cls
    entry = _entry_points().get(kind)
    if entry is None:
        raise ConfigError(f"unknown backend {kind!r}; known backends: {', '.join(known_kinds())}")
    try:
        loaded = entry.load()
    except ImportError as exc:
        extra = _EXTRAS.get(kind)
        hint = f"pip install 'botkit[{extra}]'" if extra else "install the package that provides it"
        raise ConfigError(f"backend {kind!r} cannot be loaded ({entry.value}): {exc}", hint=hint) from exc
    if not (isinstance(loaded, type) and issubclass(loaded, Backend)):
        raise ConfigError(f"backend {kind!r}: entry point {entry.value} is not a Backend subclass")
    return loaded


def parse_spec(spec: str) -> tuple[str, str]:
    """Split ``kind:model`` at the first colon (the model may be empty)."""
    kind, _, model = spec.strip().partition(":")
    if not kind:
        raise ConfigError(f"invalid backend {spec!r}: expected 'kind' or 'kind:model', e.g. 'openai:gpt-4o-mini'")
    return kind, model.strip()


def create_backend(spec: str, config: BotConfig) -> Backend:
    """Build the backend named by ``spec`` with its options from ``config``.

    Raises :class:`ConfigError` for an unknown kind, a missing client library or
    invalid settings (e.g. ``openai`` without an API key or base URL). Does no network
    or model I/O.
    """
    kind, model = parse_spec(spec)
    cls = backend_class(kind)
    return cls(model=model, config=config)


__all__ = [
    "BUILTIN_BACKENDS",
    "GROUP",
    "backend_class",
    "create_backend",
    "known_kinds",
    "parse_spec",
    "register_backend",
    "unregister_backend",
]
