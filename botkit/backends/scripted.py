"""A scripted backend: the test double shipped with botkit (like llm's ``MockModel``).

Use it in your own bot's tests::

    backend = ScriptedBackend()
    backend.enqueue("You can reset it in Settings [1].")
    backend.enqueue(BackendUnavailable("down"))          # the next call fails
    backend.enqueue("slow", delay=5.0)                    # past a 1 s deadline: BackendTimeout

Replies are consumed in order; when the queue is empty the reply is
``"[scripted] " + prompt.question``. Every prompt received is appended to ``prompts``.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel

from botkit.backends.base import (
    Backend,
    Completion,
    Done,
    Prompt,
    StreamEvent,
    TextDelta,
    Usage,
    backend_error,
    estimate_prompt_tokens,
    parse_citations,
)
from botkit.errors import BackendError, BackendTimeout

if TYPE_CHECKING:
    from botkit.config import BotConfig

DEFAULT_PREFIX = "[scripted] "


@dataclass(frozen=True)
class _Step:
    reply: str | BaseException
    delay: float
    first_token_delay: float
    chunks: tuple[str, ...] | None
    then_raise: BaseException | None
    abstained: bool


class ScriptedBackend(Backend):
    """Replies from a queue; records prompts; honours deadlines; streams in chunks."""

    kind = "scripted"
    supports_streaming = True

    def __init__(self, *, model: str = "", options: BaseModel | None = None, config: BotConfig | None = None) -> None:
        super().__init__(model=model, options=options, config=config)
        self.prompts: list[Prompt] = []
        self._queue: deque[_Step] = deque()

    def enqueue(
        self,
        reply: str | BaseException,
        *,
        delay: float = 0.0,
        first_token_delay: float = 0.0,
        chunks: Sequence[str] | None = None,
        then_raise: BaseException | None = None,
        abstained: bool = False,
    ) -> None:
        """Queue the reply to the next call.

        ``reply`` is the text, or an exception raised when the call starts (after
        ``delay``). ``delay`` is the time the whole reply takes; in a stream it is spread
        over the chunks after the first. ``first_token_delay`` passes before the first
        chunk. ``chunks`` splits the text for streaming (default: word by word; they must
        join to ``reply``). ``then_raise`` is raised after all chunks were streamed (or
        instead of returning from ``generate``): a failure mid-stream. A call whose
        delays exceed its ``timeout`` sleeps ``timeout`` seconds, then raises
        :class:`~botkit.errors.BackendTimeout`.
        """
        parts = tuple(chunks) if chunks is not None else None
        if parts is not None and isinstance(reply, str) and "".join(parts) != reply:
            raise ValueError("chunks must join to the reply text")
        self._queue.append(_Step(reply, delay, first_token_delay, parts, then_raise, abstained))

    @property
    def pending(self) -> int:
        """Replies still queued."""
        return len(self._queue)

    def _next(self, prompt: Prompt) -> _Step:
        self.prompts.append(prompt)
        if self._queue:
            return self._queue.popleft()
        return _Step(DEFAULT_PREFIX + prompt.question, 0.0, 0.0, None, None, False)

    def _completion(self, prompt: Prompt, text: str, step: _Step) -> Completion:
        usage = Usage(estimate_prompt_tokens(self, prompt.messages), self.count_tokens(text))
        cited = parse_citations(text, len(prompt.passages))
        return Completion(text=text, usage=usage, backend=self.spec, abstained=step.abstained, cited=cited)

    async def _timeout(self, timeout: float, partial: str = "") -> BackendTimeout:
        await asyncio.sleep(max(0.0, timeout))
        error = backend_error(BackendTimeout, f"{self.spec}: no reply within {timeout:.2f}s", retryable=True)
        error.partial_text = partial  # type: ignore[attr-defined]
        return error

    async def generate(self, prompt: Prompt, *, timeout: float) -> Completion:
        """Return the next scripted reply after its delays (see :meth:`enqueue`)."""
        step = self._next(prompt)
        total = step.first_token_delay + step.delay
        if total > timeout:
            raise await self._timeout(timeout)
        await asyncio.sleep(total)
        if isinstance(step.reply, BaseException):
            raise step.reply
        if step.then_raise is not None:
            raise step.then_raise
        return self._completion(prompt, step.reply, step)

    async def stream(self, prompt: Prompt, *, timeout: float) -> AsyncIterator[StreamEvent]:
        """Stream the next scripted reply chunk by chunk (see :meth:`enqueue`)."""
        step = self._next(prompt)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if isinstance(step.reply, BaseException):
            if step.first_token_delay + step.delay > timeout:
                raise await self._timeout(timeout)
            await asyncio.sleep(step.first_token_delay + step.delay)
            raise step.reply
        chunks = step.chunks if step.chunks is not None else tuple(re.findall(r"\s*\S+\s*", step.reply) or [step.reply])
        gap = step.delay / max(1, len(chunks) - 1) if len(chunks) > 1 else step.delay
        sent = ""
        for index, chunk in enumerate(chunks):
            wait = step.first_token_delay if index == 0 else gap
            if loop.time() + wait > deadline:
                raise await self._timeout(deadline - loop.time(), sent)
            await asyncio.sleep(wait)
            sent += chunk
            yield TextDelta(chunk)
        if len(chunks) == 1 and step.delay:
            if loop.time() + step.delay > deadline:
                raise await self._timeout(deadline - loop.time(), sent)
            await asyncio.sleep(step.delay)
        if step.then_raise is not None:
            error = step.then_raise
            if isinstance(error, BackendError) and not hasattr(error, "partial_text"):
                error.partial_text = sent  # type: ignore[attr-defined]
            raise error
        yield Done(self._completion(prompt, step.reply, step))


__all__ = ["DEFAULT_PREFIX", "ScriptedBackend"]
