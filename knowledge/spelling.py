"""Spelling correction of questions against the knowledge base's own words.

"how to cancle my subscripton" embeds far from "Cancel your subscription" and its
misspelt words match nothing in the lexical index, so a typo can turn an answerable
question into "nothing relevant". Before retrieval, a word is replaced by a word of the
knowledge base one edit away (a letter deleted, inserted, replaced, or two neighbours
swapped) when all of these hold:

- the word is at least :data:`MIN_LENGTH` letters of a Latin-script alphabet and does
  not occur in the knowledge base;
- it is not a whole word of the embedding model's vocabulary (a word the model knows,
  such as "stock" or "price", is a real word, not a typo, even if no document uses it);
- a word one edit away occurs in at least :data:`MIN_DOCUMENTS` chunks; the most frequent
  such word wins.

Nothing is learnt from queries and no dictionary is shipped: the knowledge base is the
vocabulary, so product names and jargon are corrected towards the help centre's spelling.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping

MIN_LENGTH = 4
MIN_DOCUMENTS = 1
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


class Speller:
    """Corrects words of a question towards ``vocabulary`` (word → chunks containing it).

    ``known`` says whether a lowercase word is a real word although the knowledge base
    lacks it (the embedding model's whole-word vocabulary); such words are kept.
    """

    def __init__(self, vocabulary: Mapping[str, int], *, known: Callable[[str], bool] | Collection[str] = ()) -> None:
        self._vocabulary = vocabulary
        self._known = known if callable(known) else set(known).__contains__

    def correct(self, text: str) -> str:
        """``text`` with its likely typos replaced (case of the first letter kept)."""
        return _WORD.sub(self._replace, text)

    def corrections(self, text: str) -> dict[str, str]:
        """The replacements :meth:`correct` makes, word → correction (for logs and tests)."""
        found: dict[str, str] = {}
        for match in _WORD.finditer(text):
            replaced = self._replace(match)
            if replaced != match.group(0):
                found[match.group(0)] = replaced
        return found

    def _replace(self, match: re.Match[str]) -> str:
        word = match.group(0)
        lower = word.lower()
        if (
            len(lower) < MIN_LENGTH
            or not lower.isascii()
            or lower in self._vocabulary
            or self._known(lower)
        ):
            return word
        best, best_count = None, MIN_DOCUMENTS - 1
        for candidate in _one_edit(lower):
            count = self._vocabulary.get(candidate, 0)
            if count > best_count or (count == best_count and best is not None and candidate < best):
                best, best_count = candidate, count
        if best is None:
            return word
        return best.capitalize() if word[:1].isupper() else best


def _one_edit(word: str) -> set[str]:
    """Every string one deletion, transposition, replacement or insertion from ``word``."""
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    deletes = {a + b[1:] for a, b in splits if b}
    swaps = {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1}
    replaces = {a + c + b[1:] for a, b in splits if b for c in _LETTERS if c != b[0]}
    inserts = {a + c + b for a, b in splits for c in _LETTERS}
    return (deletes | swaps | replaces | inserts) - {word}


def wordpiece_words(tokenizer: object) -> Callable[[str], bool]:
    """Whether a lowercase word is a whole word of a WordPiece/BPE tokenizer's vocabulary
    (``lambda word: False`` when the tokenizer exposes none)."""
    get_vocab = getattr(tokenizer, "get_vocab", None)
    if not callable(get_vocab):
        return lambda word: False
    words = {token.lower() for token in get_vocab() if token.isalpha()}
    return words.__contains__


__all__ = ["MIN_DOCUMENTS", "MIN_LENGTH", "Speller", "wordpiece_words"]
