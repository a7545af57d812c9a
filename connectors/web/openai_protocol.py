"""Schemas of the OpenAI-compatible API (``/v1/chat/completions``, ``/v1/models``).

Only what botkit honours is modelled; other OpenAI parameters (``temperature``,
``max_tokens``, ``tools``, ...) are accepted and ignored, since the bot's own settings
decide generation. botkit adds one field, ``botkit``, to the completion and to the final
stream chunk: ``{"conversation_id", "citations", "backend", "handoff", "abstained",
"message_id"}``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class TextPart(BaseModel):
    """A text part of a message's content list."""

    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    """One message of the request's transcript."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        """The message's text; non-text parts raise :class:`ValueError`."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        texts = []
        for part in self.content:
            if part.type != "text":
                raise ValueError(f"content parts of type {part.type!r} are not supported; send text")
            texts.append(part.text or "")
        return "".join(texts)


class StreamOptions(BaseModel):
    """``stream_options``: ``include_usage`` adds a final chunk with token counts."""

    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """``POST /v1/chat/completions``."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(description="The bot's name, as listed by /v1/models.")
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None


class ResponseMessage(BaseModel):
    """The assistant message of a completion."""

    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    """The one choice of a completion."""

    index: int = 0
    message: ResponseMessage
    finish_reason: Literal["stop"] = "stop"
    logprobs: None = None


class Usage(BaseModel):
    """Token counts of the turn."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class BotkitExtra(BaseModel):
    """botkit's extra field: where the answer comes from."""

    conversation_id: str
    citations: list[dict[str, Any]] = Field(default_factory=list)
    backend: str | None = None
    handoff: bool = False
    abstained: bool = False
    message_id: int | None = None


class ChatCompletion(BaseModel):
    """A non-streamed completion."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    botkit: BotkitExtra


class DeltaMessage(BaseModel):
    """The piece of the message a chunk adds."""

    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    """The one choice of a chunk."""

    index: int = 0
    delta: DeltaMessage
    finish_reason: Literal["stop"] | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    """One streamed chunk (``data: {...}`` lines, then ``data: [DONE]``)."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    botkit: BotkitExtra | None = None


class Model(BaseModel):
    """A model: the bot."""

    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "botkit"


class ModelList(BaseModel):
    """``GET /v1/models``."""

    object: Literal["list"] = "list"
    data: list[Model]


class ErrorBody(BaseModel):
    """OpenAI's error object."""

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """``{"error": {...}}``, as OpenAI answers errors."""

    error: ErrorBody
