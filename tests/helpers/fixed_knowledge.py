"""A stand-in knowledge base for tests that choose the retrieved passages themselves."""

from __future__ import annotations

from typing import Any


class _NoEmbedder:
    def embed(self, texts: list[str]) -> list[list[float]]:
        return [[0.0] for _ in texts]


class FixedKnowledge:
    """What :class:`~botkit.bot.Bot` needs of a knowledge base: ``retriever`` decides what
    every question retrieves; embeddings are never used."""

    def __init__(self, retriever: Any) -> None:
        self.retriever = retriever
        self.embedder = _NoEmbedder()

    def close(self) -> None:
        pass
