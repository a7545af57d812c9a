"""Micro-batching of concurrent calls: many threads' single items → one batched call.

Query embedding and the vector store's searches and reads each cost about the same per
call whether the call carries one item or sixteen (a Chroma query of 16 vectors took
2 ms where 16 queries of one took 16 ms). When many turns retrieve at once, their calls
are coalesced by a :class:`Batcher`.

A leader/follower scheme, no background thread: a call that finds no batch running runs
one at once (no added latency when idle), taking every item pending at that moment (at
most ``max_batch``). Calls that arrive while a batch runs wait; when the batch ends, its
leader wakes the oldest waiting call to lead the next batch, which takes everything that
queued meanwhile. So ``n`` concurrent calls cost about two batched calls instead of ``n``
competing ones, and a caller runs at most one batch: the one holding its own item.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class _Request(Generic[Item, Result]):
    """One item waiting in a :class:`Batcher`."""

    __slots__ = ("done", "error", "item", "lead", "result")

    def __init__(self, item: Item) -> None:
        self.item = item
        self.done = threading.Event()
        self.lead = False  # woken to run the next batch rather than with a result
        self.result: Result | None = None
        self.error: BaseException | None = None


class Batcher(Generic[Item, Result]):
    """Coalesces concurrent :meth:`call` s into calls of ``run(items) -> results``.

    ``run`` gets the items in arrival order and must return one result per item, in the
    same order. Thread-safe. If ``run`` raises (or returns the wrong number of results),
    every call of that batch raises the same exception; the next batch runs normally.
    """

    def __init__(self, run: Callable[[Sequence[Item]], Sequence[Result]], *, max_batch: int = 64) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self._run = run
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._pending: list[_Request[Item, Result]] = []
        self._running = False
        self.batches = 0
        """``run`` calls made so far (for tests and benchmarks)."""

    @property
    def pending(self) -> int:
        """Calls waiting for the running batch to end."""
        with self._lock:
            return len(self._pending)

    def call(self, item: Item) -> Result:
        """``run([item, ...])``'s result for ``item``, computed with concurrent callers' items."""
        request: _Request[Item, Result] = _Request(item)
        with self._lock:
            self._pending.append(request)
            lead = not self._running
            self._running = True
        if not lead:
            try:
                request.done.wait()
            except BaseException:  # interrupted while queued: never strand the batches after it
                self._abandon(request)
                raise
            if not request.lead:
                return _result(request)
        self._run_batch()
        return _result(request)

    def _run_batch(self) -> None:
        """Run the pending items (the caller's own is the oldest), then hand over."""
        with self._lock:
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
            self.batches += 1
        try:
            results = self._run([r.item for r in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"a batched call returned {len(results)} results for {len(batch)} items")
        except BaseException as exc:  # noqa: BLE001 - handed to every waiter of the batch, re-raised there
            for r in batch:
                r.error = exc
        else:
            for r, result in zip(batch, results):
                r.result = result
        with self._lock:
            successor = self._pending[0] if self._pending else None
            if successor is None:
                self._running = False
            else:
                successor.lead = True
        for r in batch:
            r.done.set()
        if successor is not None:
            successor.done.set()

    def _abandon(self, request: _Request[Item, Result]) -> None:
        """Drop an item whose caller stopped waiting; pass the lead on if it had been handed it."""
        with self._lock:
            if request in self._pending:
                self._pending.remove(request)
            if not request.lead:
                return
            successor = self._pending[0] if self._pending else None
            if successor is None:
                self._running = False
            else:
                successor.lead = True
        if successor is not None:
            successor.done.set()


def _result(request: _Request[Item, Result]) -> Result:
    if request.error is not None:
        raise request.error
    return request.result  # type: ignore[return-value]


__all__ = ["Batcher"]
