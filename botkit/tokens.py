"""Token counting helpers.

:func:`approx_tokens` is a tokenizer-free estimate used wherever a backend has no real
tokenizer at hand. :func:`tiktoken_counter` returns an exact counter for OpenAI models
when tiktoken can work *offline*: tiktoken downloads its encoding files on first use, so
it is only tried when its cache already holds the file; otherwise the caller falls back
to the estimate without any network attempt.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import tempfile
import threading
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

_PIECES = re.compile(r"\w+|[^\w\s]", re.UNICODE)

# Where tiktoken's bundled plugin downloads each encoding from (the cache key is the
# sha1 of this URL).
_TIKTOKEN_URLS = {
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
}
_lock = threading.Lock()


@lru_cache(maxsize=2048)
def approx_tokens(text: str) -> int:
    """Estimate the tokens of ``text`` without a tokenizer.

    A word of up to six letters costs one token, a longer one ``ceil(len / 5)``, a run
    of digits one token per three digits, and each punctuation mark one. On English prose
    this lands within about 20% of GPT-style BPE counts and errs high rather than low
    (so prompt budgets stay safe). Never 0 for non-empty text.

    Memoised (a bounded LRU, thread-safe): one turn counts its system prompt and history
    several times (prompt budget, usage estimate) and history repeats turn after turn,
    while counting a few kilobytes of prose costs a few hundred microseconds.
    """
    total = 0
    for piece in _PIECES.findall(text):
        if piece.isdigit():
            total += math.ceil(len(piece) / 3)
        else:
            total += 1 if len(piece) <= 6 else math.ceil(len(piece) / 5)
    return total


def _tiktoken_cache_dir() -> Path:
    # Mirrors tiktoken.load.read_file_cached: these are tiktoken's own variables, read
    # here only to find out whether tiktoken would need the network.
    for name in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        value = os.environ.get(name)
        if value:
            return Path(value)
    return Path(tempfile.gettempdir()) / "data-gym-cache"


def _encoding_name(model: str) -> str:
    try:
        import tiktoken
    except ImportError:
        return "o200k_base"
    try:
        return tiktoken.encoding_name_for_model(model)
    except KeyError:
        return "o200k_base" if not model.startswith(("gpt-3.5", "gpt-4-", "text-embedding")) else "cl100k_base"


@lru_cache(maxsize=16)
def tiktoken_counter(model: str) -> Callable[[str], int] | None:
    """An exact token counter for an OpenAI ``model``, or None when unavailable offline.

    None when tiktoken is not installed or its cache lacks the model's encoding file; no
    download is attempted. Results are cached per model.
    """
    name = _encoding_name(model)
    url = _TIKTOKEN_URLS.get(name)
    if url is None:
        return None
    cached = _tiktoken_cache_dir() / hashlib.sha1(url.encode()).hexdigest()
    if not cached.is_file():
        return None
    try:
        import tiktoken

        with _lock:
            encoding = tiktoken.get_encoding(name)
    except Exception:  # noqa: BLE001 - any failure means "use the estimate"
        return None

    def count(text: str) -> int:
        return len(encoding.encode(text, disallowed_special=()))

    return count


__all__ = ["approx_tokens", "tiktoken_counter"]
