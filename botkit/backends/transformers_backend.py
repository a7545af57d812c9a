"""The ``transformers`` backend: a local Hugging Face causal LM.

Spec ``transformers:<folder>`` (anything saved with ``save_pretrained``) or
``transformers:<org/name>`` for a model already in the local Hugging Face cache; nothing
is downloaded. Settings come from the ``transformers:`` section of ``bot.yaml``
(:class:`~botkit.config.TransformersSettings`): device, ``max_new_tokens``,
``temperature`` (0: greedy), ``timeout_s``.

The model loads once per (path, device) in a worker thread on first use and is shared by
every backend instance (see :mod:`botkit.backends._hf_models`). Generation runs on the
model's own long-lived thread, one reply at a time; the deadline is a ``StoppingCriteria`` checked after every token, so a slow
model stops in time and the call raises :class:`~botkit.errors.BackendTimeout`. The
prompt is rendered with the tokenizer's chat template (or a plain ``Role: content``
transcript) and fitted to the context: the oldest history turns go first, then the tail
of the system message, keeping the latest user message.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botkit.backends import _hf_models
from botkit.backends.base import (
    Backend,
    ChatMessage,
    Completion,
    Done,
    Prompt,
    StreamEvent,
    TextDelta,
    Usage,
    backend_error,
    parse_citations,
)
from botkit.config import TransformersSettings
from botkit.errors import BackendError, BackendTimeout, ConfigError

if TYPE_CHECKING:
    from botkit.config import BotConfig

_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
_END = object()


class TransformersBackend(Backend):
    """Generation with ``AutoModelForCausalLM`` from a local folder or cache."""

    kind = "transformers"
    supports_streaming = True
    max_context_tokens = 2048
    Options = TransformersSettings
    options: TransformersSettings

    def __init__(self, *, model: str, options: TransformersSettings | None = None, config: BotConfig | None = None) -> None:
        super().__init__(model=model, options=options, config=config)
        self.source = _resolve_source(model, config)
        self.timeout_s = self.options.timeout_s
        self.max_context_tokens = _read_context(self.source)  # type: ignore[misc]
        self._loaded: _hf_models.LoadedModel | None = None

    @classmethod
    def options_from_config(cls, config: BotConfig | None) -> TransformersSettings:
        """The ``transformers:`` section of the bot config."""
        return config.transformers if config is not None else TransformersSettings()

    async def load(self) -> _hf_models.LoadedModel:
        """Load (or reuse) the model in a worker thread; called by the first generate."""
        if self._loaded is None:
            device = _hf_models.default_device(self.options.device)
            self._loaded = await asyncio.to_thread(_hf_models.load_model, self.source, device)
            self.max_context_tokens = self._loaded.context  # type: ignore[misc]
        return self._loaded

    def count_tokens(self, text: str) -> int:
        """Tokens by the model's own tokenizer (loaded on first use; no weights)."""
        tokenizer = self._loaded.tokenizer if self._loaded else _hf_models.load_tokenizer(self.source)
        return len(tokenizer.encode(text, add_special_tokens=False, verbose=False))

    async def generate(self, prompt: Prompt, *, timeout: float) -> Completion:
        """Generate a reply; BackendTimeout when the deadline stops it."""
        text = ""
        async for event in self.stream(prompt, timeout=timeout):
            if isinstance(event, Done):
                return event.completion
            text += event.text
        raise AssertionError("stream ended without Done")  # pragma: no cover

    async def stream(self, prompt: Prompt, *, timeout: float) -> AsyncIterator[StreamEvent]:
        """Stream tokens as the generation thread produces them."""
        deadline = time.monotonic() + timeout
        try:
            loaded = await asyncio.wait_for(asyncio.shield(self.load()), timeout)
        except (TimeoutError, asyncio.TimeoutError) as exc:
            raise backend_error(BackendTimeout, f"{self.spec}: model still loading after {timeout:.1f}s",
                                retryable=True) from exc
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancel = threading.Event()
        max_new = prompt.max_tokens or self.options.max_new_tokens
        loaded.worker.submit(functools.partial(self._run, loaded, prompt.messages, max_new, deadline, cancel, loop, queue))
        parts: list[str] = []
        try:
            while True:
                item = await asyncio.wait_for(queue.get(), max(0.0, deadline - time.monotonic()) + 1.0)
                if isinstance(item, str):
                    if item:
                        parts.append(item)
                        yield TextDelta(item)
                    continue
                if isinstance(item, BaseException):
                    raise item
                prompt_tokens, new_tokens, timed_out = item
                break
        except (TimeoutError, asyncio.TimeoutError):
            timed_out, prompt_tokens, new_tokens = True, 0, 0
        finally:
            cancel.set()
        text = "".join(parts)
        if timed_out:
            error = backend_error(BackendTimeout, f"{self.spec}: generation passed its {timeout:.1f}s deadline",
                                  retryable=True)
            error.partial_text = text  # type: ignore[attr-defined]
            raise error
        usage = Usage(prompt_tokens, new_tokens)
        yield Done(Completion(text, usage, self.spec, cited=parse_citations(text, len(prompt.passages))))

    def _run(self, loaded: _hf_models.LoadedModel, messages: list[ChatMessage], max_new: int, deadline: float,
             cancel: threading.Event, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Any]) -> None:
        """A job on the model's generation thread: text pieces, then (prompt_tokens, new_tokens,
        timed_out) or an error. A reply that waited its whole deadline in the queue is not started."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        put = lambda item: loop.call_soon_threadsafe(queue.put_nowait, item)  # noqa: E731

        class Streamer(TextIteratorStreamer):
            def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
                put(text)

        class Deadline(StoppingCriteria):
            """Stops generation once the deadline passes or the consumer went away."""

            def __init__(self) -> None:
                self.hit = False

            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                self.hit = self.hit or time.monotonic() >= deadline
                stop = self.hit or cancel.is_set()
                return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)

        try:
            if cancel.is_set() or time.monotonic() >= deadline:  # waited its whole deadline behind other replies
                put((0, 0, True))
                return
            ids, max_new = fit_prompt(loaded, messages, max_new)
            input_ids = torch.tensor([ids], device=loaded.device)
            stopper = Deadline()
            sampling = {"do_sample": True, "temperature": self.options.temperature} if self.options.temperature > 0 \
                else {"do_sample": False}
            with torch.inference_mode():
                output = loaded.model.generate(
                    input_ids=input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=max_new,
                    streamer=Streamer(loaded.tokenizer, skip_prompt=True, skip_special_tokens=True),
                    stopping_criteria=StoppingCriteriaList([stopper]),
                    pad_token_id=loaded.tokenizer.pad_token_id, **sampling,
                )
            put((len(ids), int(output.shape[1]) - len(ids), stopper.hit))
        except Exception as exc:  # noqa: BLE001 - handed to the awaiting coroutine as a BackendError
            late = time.monotonic() >= deadline
            error = backend_error(BackendTimeout if late else BackendError,
                                  f"{self.spec}: generation failed: {type(exc).__name__}: {exc}", retryable=late)
            error.__cause__ = exc
            put(error)


def render(tokenizer: Any, messages: list[ChatMessage]) -> list[int]:
    """Token ids of ``messages`` through the chat template, or a plain transcript."""
    chat = [{"role": m.role, "content": m.content} for m in messages]
    if getattr(tokenizer, "chat_template", None):
        try:
            text = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
        except Exception:  # noqa: BLE001 - templates that reject a system role: merge it into the first user turn
            system = "\n\n".join(m["content"] for m in chat if m["role"] == "system")
            rest = [m for m in chat if m["role"] != "system"]
            if rest and system:
                rest[0] = {**rest[0], "content": f"{system}\n\n{rest[0]['content']}"}
            text = tokenizer.apply_chat_template(rest, add_generation_prompt=True, tokenize=False)
        return list(tokenizer.encode(text, add_special_tokens=False, verbose=False))
    transcript = "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in chat) + "Assistant:"
    return list(tokenizer.encode(transcript, add_special_tokens=True, verbose=False))


def fit_prompt(loaded: _hf_models.LoadedModel, messages: list[ChatMessage], max_new: int) -> tuple[list[int], int]:
    """Prompt ids that leave room for the reply, and the (possibly reduced) reply cap.

    Drops history from the left (after the system messages, before the last message),
    then shortens the system message from its end; as a last resort keeps the last ids.
    """
    max_new = min(max_new, max(1, loaded.context // 2))
    budget = loaded.context - max_new
    kept = list(messages)
    ids = render(loaded.tokenizer, kept)
    while len(ids) > budget:
        history = [i for i, m in enumerate(kept[:-1]) if m.role != "system"]
        if not history:
            break
        del kept[history[0]]
        ids = render(loaded.tokenizer, kept)
    if len(ids) > budget and kept and kept[0].role == "system":
        system_ids = loaded.tokenizer.encode(kept[0].content, add_special_tokens=False, verbose=False)
        keep = max(0, len(system_ids) - (len(ids) - budget) - 8)
        kept[0] = ChatMessage("system", loaded.tokenizer.decode(system_ids[:keep]))
        ids = render(loaded.tokenizer, kept)
    return ids[-budget:], max_new


def _resolve_source(model: str, config: BotConfig | None) -> str:
    if not model:
        raise ConfigError("the transformers backend needs a model: set backends: ['transformers:/path/to/model'] in bot.yaml")
    path = Path(model).expanduser()
    if not path.is_absolute() and config is not None and (config.root / path).exists():
        path = config.root / path
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError(f"transformers:{model}: {path} has no config.json; point it at a folder saved with save_pretrained")
        return str(path.resolve())
    if _REPO_ID.match(model):
        from huggingface_hub import try_to_load_from_cache

        if isinstance(try_to_load_from_cache(model, "config.json"), str):
            return model
    raise ConfigError(
        f"transformers:{model}: no such folder, and no model of that id in the local Hugging Face cache "
        "(models are never downloaded at run time)",
        hint="set backends: ['transformers:/path/to/model'] in bot.yaml to a folder saved with save_pretrained",
    )


def _read_context(source: str) -> int:
    """The context length from config.json without loading anything heavy."""
    path = Path(source) / "config.json"
    if not path.is_file():
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(source, "config.json")
        path = Path(cached) if isinstance(cached, str) else path
    config, tokenizer_config = _read_json(path), _read_json(path.parent / "tokenizer_config.json")
    return _hf_models.context_length(config, _Limit(tokenizer_config.get("model_max_length")))


class _Limit:
    def __init__(self, model_max_length: Any) -> None:
        self.model_max_length = model_max_length


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


__all__ = ["TransformersBackend", "fit_prompt", "render"]
