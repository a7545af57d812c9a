"""knowledge: sources → chunks → vectors → passages.

Knows nothing of conversations or channels. Heavy dependencies (torch,
sentence-transformers, chromadb) are imported inside the modules that use them.
"""

from __future__ import annotations

from knowledge.errors import EmbeddingModelError, IndexUnavailable, KnowledgeError, SourceError
from knowledge.settings import KnowledgeSettings
from knowledge.types import Chunk, Document, Passage, RawSource, SourceRef, source_matches

__all__ = [
    "Chunk",
    "Document",
    "EmbeddingModelError",
    "IndexUnavailable",
    "KnowledgeError",
    "KnowledgeSettings",
    "Passage",
    "RawSource",
    "SourceError",
    "SourceRef",
    "source_matches",
]
