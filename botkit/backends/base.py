"""The model-backend extension point: value types and the :class:`Backend` base class.

A backend turns a :class:`Prompt` into a :class:`Completion`. One method is required,
:meth:`Backend.generate`; :meth:`Backend.stream` defaults to it. Capabilities are class
attributes the core reads (``supports_streaming``, ``max_context_tokens``,
``needs_network``, ``needs_llm_prompt``); options are a pydantic model with
``extra="forbid"``.

Errors: everything a backend raises is a :class:`~botkit.errors.BackendError`
(``BackendTimeout``, ``BackendUnavailable`` or the base class) with a ``retryable``
attribute (see :func:`backend_error`); third-party errors are translated at the boundary
with ``raise ... from exc``.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from botkit.errors import BackendError, ConfigError
from botkit.tokens import approx_tokens
from knowledge.types import Passage

if TYPE_CHECKING:
    from botkit.config import BotConfig

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class ChatMessage:
    """One message of a chat prompt."""

    role: Role
    content: str


@dataclass(frozen=True)
class Prompt:
    """What a backend answers.

    ``messages`` is the full chat prompt (system: persona, rules and the numbered sources
    fenced as data; then history; then the user's message). ``question`` is the user's
    latest message, raw. ``passages`` are the retrieved passages, numbered ``1..n`` in the
    prompt in this order. ``max_tokens`` caps the reply (``None``: the backend's setting).
    """

    messages: list[ChatMessage]
    question: str
    passages: list[Passage]
    max_tokens: int | None = None


@dataclass(frozen=True)
class Usage:
    """Token counts of one call (estimated when the model does not report them)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True)
class Completion:
    """A finished reply: its text, token usage, the backend spec that produced it,
    whether it abstained, and the 1-based passage numbers it cites."""

    text: str
    usage: Usage
    backend: str
    abstained: bool = False
    cited: tuple[int, ...] = ()


@dataclass(frozen=True)
class TextDelta:
    """A piece of reply text, in order."""

    text: str


@dataclass(frozen=True)
class Done:
    """The last event of a stream, carrying the complete reply."""

    completion: Completion


StreamEvent = TextDelta | Done


class NoOptions(BaseModel):
    """The options of a backend that takes none."""

    model_config = ConfigDict(extra="forbid")


class Backend(ABC):
    """Base class of every model backend.

    Subclasses set ``kind`` (the registry name) and implement :meth:`generate`. The
    constructor is keyword-only, does no network or model I/O, and validates options
    (raising :class:`~botkit.errors.ConfigError`); heavy resources load on first use.
    """

    kind: ClassVar[str]
    supports_streaming: ClassVar[bool] = False
    max_context_tokens: ClassVar[int] = 4096
    needs_network: ClassVar[bool] = False
    needs_llm_prompt: ClassVar[bool] = True
    Options: ClassVar[type[BaseModel]] = NoOptions
    #: Default deadline of one call in seconds; instances set it from their config section.
    timeout_s: float = 30.0

    def __init__(self, *, model: str, options: BaseModel | None = None, config: BotConfig | None = None) -> None:
        self.model = model
        self.config = config
        self.options = self._validate_options(options, config)

    @classmethod
    def options_from_config(cls, config: BotConfig | None) -> BaseModel:
        """The options to use when none are passed: by default ``Options()``.

        Backends whose settings live in a ``bot.yaml`` section (``openai:``,
        ``transformers:``) return that section.
        """
        return cls.Options()

    @classmethod
    def _validate_options(cls, options: BaseModel | None, config: BotConfig | None) -> BaseModel:
        if options is None:
            return cls.options_from_config(config)
        if isinstance(options, cls.Options):
            return options
        try:
            return cls.Options.model_validate(options.model_dump(exclude_unset=True))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"{cls.kind} backend options: {problems}") from exc

    @property
    def spec(self) -> str:
        """The config string naming this backend, e.g. ``openai:gpt-4o-mini``."""
        return f"{self.kind}:{self.model}" if self.model else self.kind

    @abstractmethod
    async def generate(self, prompt: Prompt, *, timeout: float) -> Completion:
        """Answer ``prompt`` within ``timeout`` seconds.

        Contract:

        - return a :class:`Completion` whose ``backend`` is :attr:`spec`, with ``cited``
          holding the 1-based numbers of the passages the text relies on;
        - finish (or fail) within ``timeout`` seconds, raising
          :class:`~botkit.errors.BackendTimeout` when the deadline passes;
        - raise only :class:`~botkit.errors.BackendError` subclasses, translating
          third-party errors with ``raise ... from exc`` and setting ``retryable``;
        - be safe to call concurrently from one event loop.
        """

    async def stream(self, prompt: Prompt, *, timeout: float) -> AsyncIterator[StreamEvent]:
        """Yield :class:`TextDelta` events, then exactly one :class:`Done`.

        The concatenated deltas equal ``Done.completion.text``. The deadline and error
        rules of :meth:`generate` apply to the whole stream. The default calls
        :meth:`generate` and yields its text as one delta. A consumer that stops early
        closes the generator (``aclose``); implementations release resources then.
        """
        completion = await self.generate(prompt, timeout=timeout)
        if completion.text:
            yield TextDelta(completion.text)
        yield Done(completion)

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` costs in this backend's model.

        The default is :func:`botkit.tokens.approx_tokens`, a tokenizer-free estimate
        (about one token per four characters of each word, one per punctuation mark).
        """
        return approx_tokens(text)

    async def aclose(self) -> None:  # noqa: B027 - optional hook with a default
        """Release clients and connections. Idempotent; the default does nothing."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.spec}>"


E = TypeVar("E", bound=BackendError)


def backend_error(cls: type[E], message: str, *, retryable: bool, hint: str | None = None) -> E:
    """Build a backend error carrying ``retryable``.

    ``retryable`` is True for transient failures (timeouts, rate limits, 5xx, dropped
    connections): the same backend may succeed soon. False for failures a retry will not
    fix (bad key, exhausted quota, a rejected request). The router falls back to the next
    backend on either; the circuit breaker counts both.
    """
    error = cls(message, hint=hint)
    error.retryable = retryable  # type: ignore[attr-defined]
    return error


def is_retryable(error: BaseException) -> bool:
    """The ``retryable`` flag of a backend error (True when unset: be optimistic)."""
    return bool(getattr(error, "retryable", True))


_CITATION = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")


def parse_citations(text: str, n_passages: int) -> tuple[int, ...]:
    """The distinct passage numbers cited as ``[n]`` or ``[n, m]`` in ``text``, in order.

    Numbers outside ``1..n_passages`` are ignored (a model may invent them).
    """
    seen: list[int] = []
    for match in _CITATION.finditer(text):
        for part in match.group(1).split(","):
            number = int(part)
            if 1 <= number <= n_passages and number not in seen:
                seen.append(number)
    return tuple(seen)


def estimate_prompt_tokens(backend: Backend, messages: Sequence[ChatMessage]) -> int:
    """Prompt tokens of ``messages`` by ``backend.count_tokens`` (+4 per message framing)."""
    return sum(backend.count_tokens(m.content) + 4 for m in messages) + 2


__all__ = [
    "Backend",
    "ChatMessage",
    "Completion",
    "Done",
    "NoOptions",
    "Prompt",
    "Role",
    "StreamEvent",
    "TextDelta",
    "Usage",
    "backend_error",
    "estimate_prompt_tokens",
    "is_retryable",
    "parse_citations",
]
