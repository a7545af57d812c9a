"""A bounded cache of embeddings by text: a text embedded again skips the model.

The vector of a text never changes for a given model, and support traffic repeats
itself: the same question typed by many users, suggested questions sent verbatim,
greetings, and popular articles whose sentences are scored question after question.
Embedding a question is most of a retrieval's CPU on a CPU host (about 8 ms of a 2-core
machine's time for all-MiniLM-L6-v2 on ONNX Runtime, against well under a millisecond for
the searches). So the :class:`~knowledge.retriever.Retriever` keeps the most recently
used query vectors (``knowledge.query_cache_size``; 0 turns it off), and the extractive
backend those of the sentences it scores.

For questions the key is the exact text embedded (after spelling correction, with any
context the dialogue prepended): only the same text gets the same vector, so answers are
unchanged. A cache belongs to one retriever and so to one embedding model; re-ingesting
changes the chunks, not the vectors of questions, so nothing is invalidated.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np

Embed = Callable[[Sequence[str]], np.ndarray]


class VectorCache:
    """The ``size`` most recently used vectors, by text. Thread-safe."""

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError(f"the vector cache size must be 0 or more, got {size}")
        self.size = size
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        """Texts answered from the cache so far, over every caller (the retriever counts its own calls
        for ``knowledge.observe``)."""
        self.misses = 0
        """Texts embedded so far (each distinct text of a call once)."""

    def __len__(self) -> int:
        return len(self._vectors)

    def vectors(self, texts: Sequence[str], embed: Embed) -> np.ndarray:
        """One row per text: cached rows, and the rest from ``embed`` in one call.

        A text that appears twice in ``texts`` is embedded once. ``embed`` must return one
        row per text it is given (a :class:`RuntimeError` otherwise, and nothing is cached).
        """
        if not texts:
            return np.asarray(embed([]), dtype=np.float32)
        with self._lock:
            found: dict[str, np.ndarray] = {}
            for text in texts:
                vector = self._vectors.get(text)
                if vector is not None:
                    self._vectors.move_to_end(text)
                    found[text] = vector
        missing = [text for text in dict.fromkeys(texts) if text not in found]
        if missing:
            rows = np.asarray(embed(missing), dtype=np.float32)
            if len(rows) != len(missing):
                raise RuntimeError(f"the embedding model returned {len(rows)} vectors for {len(missing)} texts")
            for text, row in zip(missing, rows, strict=True):
                row = row.copy()  # not a view of the batch: the cache keeps rows, not batches
                row.setflags(write=False)
                found[text] = row
            self._store(missing, found)
        with self._lock:
            self.hits += len(texts) - len(missing)
            self.misses += len(missing)
        return np.stack([found[text] for text in texts])

    def _store(self, texts: Sequence[str], vectors: dict[str, np.ndarray]) -> None:
        if self.size == 0:
            return
        with self._lock:
            for text in texts:
                self._vectors[text] = vectors[text]
                self._vectors.move_to_end(text)
            while len(self._vectors) > self.size:
                self._vectors.popitem(last=False)


__all__ = ["VectorCache"]
