"""botkit.heap.settle: garbage collected first, the live objects frozen out of full passes."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from botkit import heap


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


@pytest.fixture
def unfreeze() -> Iterator[None]:
    """Undo the freeze after the test: the rest of the session collects as usual."""
    try:
        yield
    finally:
        gc.unfreeze()


def test_settle_collects_garbage_then_freezes_what_lives(unfreeze: None) -> None:
    a, b = _Node(), _Node()
    a.other, b.other = b, a  # a cycle: only the cycle collector frees it
    dead = weakref.ref(a)
    del a, b
    kept = _Node()
    tracked_before = len(gc.get_objects())

    frozen = heap.settle()

    assert dead() is None  # collected before the freeze, not frozen for good
    # The count is a snapshot: frozen objects that die later leave the permanent generation.
    assert frozen > 0 and gc.get_freeze_count() > 0
    assert len(gc.get_objects()) < tracked_before  # full passes no longer walk the frozen objects
    assert not any(o is kept for o in gc.get_objects())
