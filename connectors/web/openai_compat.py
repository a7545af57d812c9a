"""The OpenAI-compatible API: ``GET /v1/models`` and ``POST /v1/chat/completions``.

Any OpenAI client (the official SDKs, LangChain's ``ChatOpenAI``, ...) can talk to the
bot with ``base_url="http://HOST/v1"``, ``api_key=<botkit keys create>`` and
``model=<the bot's name>``. Answers are grounded and cited like on every other surface;
the citations travel in the extra ``botkit`` field (see :mod:`.openai_protocol`).

**Conversations.** OpenAI's API is stateless: each request carries the whole transcript.
botkit maps it to a stored conversation on channel ``openai``: the request's earlier
user/assistant messages are looked up as the transcript of the latest conversation
started with the same API key, system prompt and first user message; when the stored
transcript equals them exactly, the new message continues that conversation. Otherwise
(first message, edited or regenerated history) a new conversation starts, seeded with
the earlier messages (the last ``limits.history_turns``) so the answer sees their
context. Matching needs the whole transcript, so nothing of another conversation leaks.
System messages are not instructions to the bot (its persona is in bot.yaml).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import StreamingResponse

from botkit.errors import BotkitError
from botkit.keys import ApiKey
from botkit.messages import IncomingMessage, Reply, ReplyDelta, ReplyDone
from connectors.web import openai_protocol as op
from connectors.web import service
from connectors.web.deps import AdminKey, State, WebState, limit_ip

CHANNEL = "openai"
router = APIRouter(prefix="/v1", tags=["openai"], dependencies=[Depends(limit_ip)])
_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": op.ErrorResponse} for code in (400, 401, 404, 429)}
_STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {"schema": {"type": "string",
          "description": "With stream=true: `data: <chat.completion.chunk>` lines, then `data: [DONE]`."}}}},
    **_ERRORS,
}


class OpenAIError(HTTPException):
    """An HTTP error rendered in OpenAI's ``{"error": {...}}`` format."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None) -> None:
        super().__init__(status, message)
        self.type, self.code, self.param = type, code, param


@router.get("/models", response_model=op.ModelList, responses=_ERRORS)
async def list_models(state: State, _key: AdminKey) -> op.ModelList:
    """The one model this server offers: the bot."""
    return op.ModelList(data=[op.Model(id=state.bot.name)])


@router.post("/chat/completions", response_model=op.ChatCompletion, responses=_STREAM_DOC)
async def chat_completions(body: op.ChatCompletionRequest, state: State, key: AdminKey) -> Any:
    """Answer the last user message of ``messages`` as the bot (streamed with ``stream: true``)."""
    if body.model != state.bot.name:
        raise OpenAIError(404, f"The model `{body.model}` does not exist; this server offers `{state.bot.name}`.",
                          code="model_not_found", param="model")
    system, transcript = _transcript(body.messages, state.max_message_chars)
    question = transcript[-1][1]
    conversation_id = await _conversation_for(state, key, system, transcript)
    incoming = IncomingMessage(text=question, conversation_id=conversation_id, channel=CHANNEL,
                               metadata={"api_key": key.id})
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    if body.stream:
        stream = service.DetachedStream(state.bot.handle_stream(incoming), state.tasks)
        await stream.start()
        usage = bool(body.stream_options and body.stream_options.include_usage)
        chunks = _chunks(stream, completion_id, body.model, usage)
        return StreamingResponse(chunks, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
    reply = await state.bot.handle(incoming)
    return op.ChatCompletion(
        id=completion_id, created=int(time.time()), model=body.model,
        choices=[op.Choice(message=op.ResponseMessage(content=reply.text))],
        usage=_usage(reply), botkit=_extra(reply),
    )


def _transcript(messages: list[op.ChatMessage], max_chars: int) -> tuple[str, list[tuple[str, str]]]:
    """The system prompt and the user/assistant turns; the last must be a user message."""
    system, turns = "", []
    for index, message in enumerate(messages):
        try:
            text = message.text()
        except ValueError as exc:
            raise OpenAIError(400, str(exc), param=f"messages.{index}.content") from None
        if message.role in ("system", "developer"):
            system = system or text
        elif message.role in ("user", "assistant"):
            turns.append((message.role, text))
    if not turns or turns[-1][0] != "user":
        raise OpenAIError(400, "the last message must be a user message", param="messages")
    problem = service.text_problem(turns[-1][1], max_chars)
    if problem:
        raise OpenAIError(400, problem.replace("text", "the last user message", 1), param="messages")
    return system, [(role, text[:max_chars]) for role, text in turns]


def _normal(text: str) -> str:
    return " ".join(text.split())


async def _conversation_for(state: WebState, key: ApiKey, system: str, transcript: list[tuple[str, str]]) -> str:
    """Continue the stored conversation whose transcript the request repeats, else start one."""
    bot, store = state.bot, state.bot.store
    seed = f"{key.id}\0{system}\0{transcript[0][1] if transcript[0][0] == 'user' else ''}"
    external_id = "oa-" + hashlib.sha256(seed.encode("utf-8")).hexdigest()[:40]
    prior = transcript[:-1]
    if prior:
        found = await store.find_conversation(bot=bot.name, channel=CHANNEL, external_id=external_id)
        if found is not None and found.state != "closed":
            limit = len(prior) + 10
            stored = await store.history(found.id, limit=limit)
            roles = {"user": "user", "assistant": "assistant", "agent": "assistant"}
            seen = [(roles[m.role], _normal(m.text)) for m in stored if m.role in roles]
            if len(stored) < limit and seen == [(role, _normal(text)) for role, text in prior]:
                return found.id
    conversation_id = await bot.new_conversation(channel=CHANNEL, external_id=external_id,
                                                 metadata={"api_key": key.id})
    last_user: int | None = None
    for role, text in prior[-bot.config.limits.history_turns:] if bot.config.limits.history_turns else []:
        if not text.strip():
            continue
        if role == "user":
            message, _ = await store.add_user_message(conversation_id, text)
            last_user = message.id
        else:
            await store.add_bot_message(conversation_id, text, reply_to=last_user)
    return conversation_id


def _usage(reply: Reply) -> op.Usage:
    return op.Usage(prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens,
                    total_tokens=reply.prompt_tokens + reply.completion_tokens)


def _extra(reply: Reply) -> op.BotkitExtra:
    return op.BotkitExtra(conversation_id=reply.conversation_id, citations=[c.to_dict() for c in reply.citations],
                          backend=reply.backend, handoff=reply.handoff, abstained=reply.abstained,
                          message_id=reply.message_id)


def _data(value: op.ChatCompletionChunk | op.ErrorResponse) -> bytes:
    exclude = {name for name in ("usage", "botkit") if getattr(value, name, "") is None}
    return f"data: {value.model_dump_json(exclude=exclude)}\n\n".encode()


async def _chunks(stream: service.DetachedStream, completion_id: str, model: str, usage: bool) -> AsyncIterator[bytes]:
    """OpenAI ``chat.completion.chunk`` lines from the bot's reply events."""
    created = int(time.time())

    def chunk(delta: op.DeltaMessage, **extra: Any) -> bytes:
        choices = [] if extra.pop("no_choices", False) else [op.ChunkChoice(delta=delta, finish_reason=extra.pop(
            "finish_reason", None))]
        return _data(op.ChatCompletionChunk(id=completion_id, created=created, model=model, choices=choices, **extra))

    yield chunk(op.DeltaMessage(role="assistant", content=""))
    streamed = False
    async for item in stream.items():
        if isinstance(item, BotkitError):
            problem = service.error_status(item)
            yield _data(op.ErrorResponse(error=op.ErrorBody(message=problem.message, type=problem.type)))
            return
        if isinstance(item, ReplyDelta) and item.text:
            streamed = True
            yield chunk(op.DeltaMessage(content=item.text))
        elif isinstance(item, ReplyDone):
            if not streamed and item.reply.text:
                yield chunk(op.DeltaMessage(content=item.reply.text))
            yield chunk(op.DeltaMessage(), finish_reason="stop", botkit=_extra(item.reply))
            if usage:
                yield chunk(op.DeltaMessage(), no_choices=True, usage=_usage(item.reply))
    yield b"data: [DONE]\n\n"
