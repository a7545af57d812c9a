"""asyncio helpers for the turn's hot path."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")

if sys.version_info >= (3, 11):

    async def within(awaitable: Awaitable[T], timeout: float) -> T:
        """``await asyncio.wait_for(awaitable, timeout)``, without the task that ``wait_for``
        creates for its awaitable before Python 3.12: :func:`asyncio.timeout` cancels the
        current task instead. Raises :class:`TimeoutError` when ``timeout`` passes.

        The awaitable runs in the caller's task (and context), where a turn awaits several
        of these per backend call and one per streamed chunk.
        """
        async with asyncio.timeout(timeout):
            return await awaitable

else:  # pragma: no cover - Python 3.10

    async def within(awaitable: Awaitable[T], timeout: float) -> T:
        """``await asyncio.wait_for(awaitable, timeout)`` (Python 3.10 has no ``asyncio.timeout``)."""
        return await asyncio.wait_for(awaitable, timeout)


__all__ = ["within"]
