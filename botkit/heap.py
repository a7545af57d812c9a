"""Keep the garbage collector's full passes short in a serving process.

A started bot holds about half a million Python objects that live as long as the process:
the embedding model's and tokenizer's, Chroma's, SQLAlchemy's, the web framework's. CPython's
cycle collector walks every one of them on each full (oldest-generation) collection, which
it runs on its own whenever enough new objects have survived: about 300 ms with the GIL
held, on a 2-core machine. Every turn in flight stalls for that long (the first-token
scenario of ``benchmarks/bench_web.py`` showed bursts of turns 200–340 ms late).

:func:`settle` is the usual cure (:func:`gc.freeze`, as Instagram's Django servers do):
once the process has started, collect what is garbage already, then move every object
alive at that moment to a permanent generation the collector no longer walks. Later
collections walk only the objects made since. Objects frozen here are still freed by
reference counting when the last reference goes; only a reference cycle among them would
never be reclaimed, which suits objects meant to live as long as the process.

The serving entry points call it after the bot has started: ``botkit serve`` (each
worker), ``botkit slack``. An application that runs a bot in its own server can call it
at the end of its own start-up.
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger(__name__)


def settle() -> int:
    """Collect garbage once, then freeze every live object (:func:`gc.freeze`).

    Call it when start-up is over (models loaded, stores open), before serving. Returns the
    number of objects frozen so far (:func:`gc.get_freeze_count`).
    """
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("heap settled: %d long-lived objects frozen out of garbage collection (%.0f ms)",
             frozen, (time.perf_counter() - started) * 1000)
    return frozen


__all__ = ["settle"]
