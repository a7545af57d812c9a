"""The router: an ordered fallback chain of backends with deadlines and circuit breakers.

For each turn the router tries its backends in order. Each attempt gets a deadline (the
router's ``attempt_timeout`` or else the backend's own ``timeout_s``, capped by what is
left of ``turn_timeout``). A backend whose circuit is open is skipped. Any
:class:`~botkit.errors.BackendError` moves on to the next backend; other exceptions are
bugs and propagate. When every backend fails, :class:`AllBackendsFailed` lists each
attempt and carries a message that is safe to show the user.

Streaming: a backend that fails *before* its first text falls through to the next one,
invisibly to the caller. A backend that fails *after* emitting text cannot be swapped
out (the user has seen its words), so the router raises :class:`StreamInterrupted`
with ``partial_text``; the caller decides how to finish the reply (e.g. append an
apology and offer a person).

Circuit breaker (one per backend): closed → open after ``failure_threshold``
consecutive failures → half-open once ``cooldown_s`` has passed, letting one trial call
through → closed on its success, open again (for a new cool-down) on its failure.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from botkit import metrics
from botkit._aio import within
from botkit.backends.base import Backend, Completion, Done, Prompt, StreamEvent, TextDelta, backend_error
from botkit.errors import BackendError, BackendTimeout

if TYPE_CHECKING:
    from botkit.config import BotConfig

BreakerState = Literal["closed", "open", "half_open"]
USER_MESSAGE = "Sorry, I can't answer right now. Please try again in a moment, or say 'talk to a human'."
_GRACE_S = 0.1  # a backend gets this long past its deadline to raise its own timeout


@dataclass(frozen=True)
class BreakerPolicy:
    """Circuit-breaker settings shared by a router's backends; ``clock`` is injectable."""

    failure_threshold: int = 3
    cooldown_s: float = 30.0
    clock: Callable[[], float] = time.monotonic


class CircuitBreaker:
    """The state of one backend's circuit (see the module docstring)."""

    def __init__(self, policy: BreakerPolicy | None = None) -> None:
        self.policy = policy or BreakerPolicy()
        self.failures = 0
        self._opened_at: float | None = None
        self._trial_running = False

    @property
    def state(self) -> BreakerState:
        """``closed``, ``open`` or ``half_open`` (open and cooled down)."""
        if self._opened_at is None:
            return "closed"
        cooled = self.policy.clock() - self._opened_at >= self.policy.cooldown_s
        return "half_open" if cooled else "open"

    def allow(self) -> bool:
        """May a call go through now? In half-open, only one trial at a time."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._trial_running:
            self._trial_running = True
            return True
        return False

    def record_success(self) -> None:
        """Close the circuit."""
        self.failures, self._opened_at, self._trial_running = 0, None, False

    def record_failure(self) -> None:
        """Count a failure; open (or re-open) the circuit at the threshold or after a failed trial."""
        self.failures += 1
        if self._trial_running or self.failures >= self.policy.failure_threshold:
            self._opened_at = self.policy.clock()
        self._trial_running = False

    def release(self) -> None:
        """End a trial that neither succeeded nor failed (the caller went away)."""
        self._trial_running = False


@dataclass(frozen=True)
class Attempt:
    """What happened to one backend during a turn."""

    backend: str
    outcome: Literal["ok", "failed", "timeout", "skipped"]
    detail: str = ""
    elapsed_s: float = 0.0


class AllBackendsFailed(BackendError):
    """Every backend of the chain failed or was skipped; ``attempts`` says how."""

    def __init__(self, attempts: Sequence[Attempt]) -> None:
        self.attempts = list(attempts)
        self.user_message = USER_MESSAGE
        lines = "; ".join(f"{a.backend}: {a.outcome}{' (' + a.detail + ')' if a.detail else ''}" for a in attempts)
        super().__init__(f"all backends failed: {lines}")


class StreamInterrupted(BackendError):
    """A backend failed after streaming some text; ``partial_text`` is what was sent."""

    def __init__(self, backend: str, partial_text: str, cause: BaseException) -> None:
        self.backend = backend
        self.partial_text = partial_text
        self.user_message = USER_MESSAGE
        super().__init__(f"{backend} failed mid-stream after {len(partial_text)} characters: {cause}")


@dataclass
class _Slot:
    name: str
    backend: Backend
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)


class Router:
    """Routes prompts through an ordered fallback chain of backends."""

    def __init__(self, backends: Sequence[Backend], *, attempt_timeout: float | None = None, turn_timeout: float = 60.0,
                 breaker: BreakerPolicy | None = None) -> None:
        if not backends:
            raise ValueError("a router needs at least one backend")
        self.attempt_timeout = attempt_timeout
        self.turn_timeout = turn_timeout
        self._slots: list[_Slot] = []
        for backend in backends:
            name, n = backend.spec, 2
            while any(s.name == name for s in self._slots):
                name, n = f"{backend.spec}#{n}", n + 1
            self._slots.append(_Slot(name, backend, CircuitBreaker(breaker)))

    @classmethod
    def from_config(cls, config: BotConfig, *, breaker: BreakerPolicy | None = None) -> Router:
        """The chain ``config.backends`` built through the registry; ``limits.turn_timeout_s`` per turn."""
        from botkit.backends.registry import create_backend

        backends = [create_backend(spec, config) for spec in config.backends]
        limits = config.limits
        breaker = breaker or BreakerPolicy(failure_threshold=limits.breaker_failures, cooldown_s=limits.breaker_cooldown_s)
        return cls(backends, turn_timeout=limits.turn_timeout_s, breaker=breaker)

    @property
    def backends(self) -> list[Backend]:
        """The chain, in order."""
        return [s.backend for s in self._slots]

    def states(self) -> dict[str, str]:
        """Breaker state per backend name (the spec, ``#2`` for duplicates), for metrics."""
        return {s.name: s.breaker.state for s in self._slots}

    def _budget(self, slot: _Slot, turn_deadline: float) -> float:
        own = self.attempt_timeout if self.attempt_timeout is not None else slot.backend.timeout_s
        return min(own, turn_deadline - time.monotonic())

    async def generate(self, prompt: Prompt) -> Completion:
        """The first successful completion along the chain; :class:`AllBackendsFailed` if none."""
        turn_deadline = time.monotonic() + self.turn_timeout
        attempts: list[Attempt] = []
        for slot in self._slots:
            budget = self._admit(slot, turn_deadline, attempts)
            if budget is None:
                continue
            started = time.monotonic()
            try:
                completion = await within(slot.backend.generate(prompt, timeout=budget), budget + _GRACE_S)
            except (BackendError, TimeoutError, asyncio.TimeoutError) as exc:
                self._failed(slot, exc, started, budget, attempts)
                continue
            except BaseException:
                slot.breaker.release()
                raise
            self._succeeded(slot, started, first_token=True)
            return completion
        raise AllBackendsFailed(attempts)

    async def stream(self, prompt: Prompt) -> AsyncIterator[StreamEvent]:
        """Stream from the first backend that produces text; see the module docstring."""
        turn_deadline = time.monotonic() + self.turn_timeout
        attempts: list[Attempt] = []
        for slot in self._slots:
            budget = self._admit(slot, turn_deadline, attempts)
            if budget is None:
                continue
            started = time.monotonic()
            attempt_deadline = started + budget + _GRACE_S
            sent: list[str] = []
            events = slot.backend.stream(prompt, timeout=budget).__aiter__()
            try:
                while True:
                    try:
                        event = await within(events.__anext__(), max(0.0, attempt_deadline - time.monotonic()))
                    except StopAsyncIteration as exc:
                        raise backend_error(BackendError, f"{slot.name}: stream ended without Done", retryable=False) from exc
                    if isinstance(event, Done):
                        self._succeeded(slot, started, first_token=not sent)  # before yielding: the caller may stop
                        yield event
                        return
                    if isinstance(event, TextDelta):
                        if not sent:
                            metrics.first_token(slot.name, time.monotonic() - started)  # observability
                        sent.append(event.text)
                    yield event
            except (BackendError, TimeoutError, asyncio.TimeoutError) as exc:
                self._failed(slot, exc, started, budget, attempts)
                if "".join(sent):
                    raise StreamInterrupted(slot.name, "".join(sent), exc) from exc
                continue
            except BaseException:
                slot.breaker.release()
                raise
            finally:
                aclose = getattr(events, "aclose", None)  # async generators have it
                if aclose is not None:
                    await aclose()
        raise AllBackendsFailed(attempts)

    def _admit(self, slot: _Slot, turn_deadline: float, attempts: list[Attempt]) -> float | None:
        """The attempt's budget, or None (recorded as skipped) when it may not run."""
        if turn_deadline - time.monotonic() <= 0:
            attempts.append(Attempt(slot.name, "skipped", "turn deadline passed"))
            return None
        if not slot.breaker.allow():
            attempts.append(Attempt(slot.name, "skipped", "circuit open"))
            metrics.backend_attempt(slot.name, "skipped", 0.0)  # observability
            return None
        metrics.circuit(slot.name, slot.breaker.state)  # observability: a half-open trial starts
        return self._budget(slot, turn_deadline)

    def _succeeded(self, slot: _Slot, started: float, *, first_token: bool) -> None:
        slot.breaker.record_success()
        elapsed = time.monotonic() - started
        if first_token:  # generate(), or a stream whose whole text came with Done
            metrics.first_token(slot.name, elapsed)
        metrics.backend_attempt(slot.name, "ok", elapsed)
        metrics.circuit(slot.name, slot.breaker.state)

    def _failed(self, slot: _Slot, exc: BaseException, started: float, budget: float, attempts: list[Attempt]) -> None:
        slot.breaker.record_failure()
        elapsed = time.monotonic() - started
        if isinstance(exc, (TimeoutError, asyncio.TimeoutError, BackendTimeout)):
            detail = str(exc) if isinstance(exc, BackendTimeout) else f"no reply within {budget:.2f}s"
            attempts.append(Attempt(slot.name, "timeout", detail, elapsed))
        else:
            attempts.append(Attempt(slot.name, "failed", f"{type(exc).__name__}: {exc}", elapsed))
        metrics.backend_attempt(slot.name, attempts[-1].outcome, elapsed, exc)  # observability
        metrics.circuit(slot.name, slot.breaker.state)

    async def aclose(self) -> None:
        """Close every backend."""
        for slot in self._slots:
            await slot.backend.aclose()


__all__ = ["AllBackendsFailed", "Attempt", "BreakerPolicy", "BreakerState", "CircuitBreaker", "Router",
           "StreamInterrupted", "USER_MESSAGE"]
