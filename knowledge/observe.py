"""Observation hooks: how the knowledge package reports timings and counts without a
metrics library.

``knowledge`` sits below ``botkit`` and imports nothing of it, so it cannot touch
botkit's Prometheus metrics. Instead it calls :func:`emit` at a few points and whoever
cares (``botkit.metrics``) registers a listener with :func:`add_listener`:

``retrieve``  ``seconds`` (float), ``passages`` (int), ``ok`` (bool): one
              :meth:`~knowledge.retriever.Retriever.retrieve` call.
``query_vectors`` ``cache`` and ``model`` (int): of one embedding batch's query texts, how
              many were found in the query-vector cache and how many the model embedded.
``ingest``    ``report`` (:class:`~knowledge.ingest.IngestReport`): one sync finished.

A listener that raises is dropped from that call and never breaks retrieval.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

Listener = Callable[..., None]
"""``listener(event: str, **fields)``."""

_listeners: list[Listener] = []
log = logging.getLogger("knowledge.observe")


def add_listener(listener: Listener) -> None:
    """Call ``listener(event, **fields)`` for every event (idempotent per listener)."""
    if listener not in _listeners:
        _listeners.append(listener)


def remove_listener(listener: Listener) -> None:
    """Stop calling ``listener``."""
    if listener in _listeners:
        _listeners.remove(listener)


def emit(event: str, **fields: Any) -> None:
    """Tell every listener about ``event``."""
    for listener in list(_listeners):  # a copy: a listener may remove itself
        try:
            listener(event, **fields)
        except Exception:  # an observer must never break the observed
            log.exception("knowledge observer %r failed on %s", listener, event)
