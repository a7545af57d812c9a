"""Errors of the knowledge package.

``knowledge`` sits below ``botkit`` in the layering and so has its own root,
:class:`KnowledgeError`; botkit translates these into its own ``RetrievalError`` /
``ConfigError`` at the boundary.
"""

from __future__ import annotations


class KnowledgeError(Exception):
    """Root of every error the knowledge package raises on purpose."""


class SourceError(KnowledgeError):
    """A source could not be read or parsed; the message names the reason."""


class EmbeddingModelError(KnowledgeError):
    """The embedding model cannot be loaded, or differs from the one that built the index."""


class IndexUnavailable(KnowledgeError):
    """The vector store (embedded folder or Chroma server) cannot be reached."""


class KnowledgeConfigError(KnowledgeError):
    """A knowledge setting is invalid."""
