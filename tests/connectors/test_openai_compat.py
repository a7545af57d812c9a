"""The OpenAI-compatible API, driven by the official ``openai`` client and by LangChain's
``ChatOpenAI``, both pointed at a real uvicorn server on 127.0.0.1."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

openai = pytest.importorskip("openai")

pytestmark = pytest.mark.asyncio(loop_scope="session")

QUESTION = "How do I reset my password?"


def _client(live_server: str, key: str) -> Any:
    """An ``AsyncOpenAI`` client of the server; use it in ``async with``, which closes it (an
    unclosed one closes itself when collected, in whatever event loop runs then)."""
    return openai.AsyncOpenAI(base_url=f"{live_server}/v1", api_key=key, max_retries=0, timeout=60)


async def test_models_lists_the_bot(live_server: str, api_key: str, kit: Any) -> None:
    async with _client(live_server, api_key) as client:
        models = await client.models.list()
    assert [m.id for m in models.data] == [kit.BOT_NAME]


async def test_completion_is_grounded_and_cited(live_server: str, api_key: str, kit: Any) -> None:
    async with _client(live_server, api_key) as client:
        completion = await client.chat.completions.create(
            model=kit.BOT_NAME, messages=[{"role": "user", "content": QUESTION}])
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content and completion.choices[0].finish_reason == "stop"
    extra = completion.model_extra["botkit"]
    assert extra["conversation_id"] and extra["citations"]
    assert any("reset-password" in c["source"] for c in extra["citations"])


async def test_streamed_completion(live_server: str, api_key: str, kit: Any) -> None:
    async with _client(live_server, api_key) as client:
        stream = await client.chat.completions.create(
            model=kit.BOT_NAME, messages=[{"role": "user", "content": QUESTION}], stream=True,
            stream_options={"include_usage": True})
        chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    final = [c for c in chunks if c.choices and c.choices[0].finish_reason == "stop"]
    assert len(final) == 1 and final[0].model_extra["botkit"]["citations"]
    assert chunks[-1].usage is not None and not chunks[-1].choices


async def test_follow_up_continues_the_conversation(live_server: str, api_key: str, kit: Any, web_bot: Any) -> None:
    async with _client(live_server, api_key) as client:
        first = await client.chat.completions.create(
            model=kit.BOT_NAME, messages=[{"role": "user", "content": QUESTION}])
        answer = first.choices[0].message.content
        follow = await client.chat.completions.create(model=kit.BOT_NAME, messages=[
            {"role": "user", "content": QUESTION}, {"role": "assistant", "content": answer},
            {"role": "user", "content": "How long is the reset link valid?"}])
        # An edited history does not continue it: a new conversation, seeded with the given turns.
        edited = await client.chat.completions.create(model=kit.BOT_NAME, messages=[
            {"role": "user", "content": QUESTION}, {"role": "assistant", "content": "Something else entirely."},
            {"role": "user", "content": "And on mobile?"}])
    conversation_id = first.model_extra["botkit"]["conversation_id"]
    assert follow.model_extra["botkit"]["conversation_id"] == conversation_id
    assert [m.role for m in await web_bot.history(conversation_id)] == ["user", "assistant"] * 2
    edited_id = edited.model_extra["botkit"]["conversation_id"]
    assert edited_id != conversation_id
    seeded = await web_bot.history(edited_id)
    assert [m.text for m in seeded][:2] == [QUESTION, "Something else entirely."]


async def test_wrong_key_is_401(live_server: str, kit: Any) -> None:
    async with _client(live_server, "bk_000000000000_wrongwrongwrongwrongwrong") as client:
        with pytest.raises(openai.AuthenticationError) as caught:
            await client.chat.completions.create(model=kit.BOT_NAME, messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 401
    assert caught.value.body["code"] == "invalid_api_key"


async def test_unknown_model_is_404_in_openai_format(live_server: str, api_key: str) -> None:
    async with _client(live_server, api_key) as client:
        with pytest.raises(openai.NotFoundError) as caught:
            await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.body["code"] == "model_not_found" and caught.value.body["param"] == "model"


async def test_bad_requests_are_400_in_openai_format(live_server: str, api_key: str, kit: Any) -> None:
    async with httpx.AsyncClient(base_url=live_server, headers={"Authorization": f"Bearer {api_key}"}) as http:
        ends_with_assistant = await http.post("/v1/chat/completions", json={
            "model": kit.BOT_NAME, "messages": [{"role": "assistant", "content": "hi"}]})
        assert ends_with_assistant.status_code == 400
        assert ends_with_assistant.json()["error"]["param"] == "messages"
        missing = await http.post("/v1/chat/completions", json={"model": kit.BOT_NAME})
        assert missing.status_code == 400 and missing.json()["error"]["param"] == "messages"
        image = await http.post("/v1/chat/completions", json={"model": kit.BOT_NAME, "messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}]})
        assert image.status_code == 400 and "not supported" in image.json()["error"]["message"]


async def test_langchain_chat_openai(live_server: str, api_key: str, kit: Any) -> None:
    chat_openai = pytest.importorskip("langchain_openai")
    model = chat_openai.ChatOpenAI(model=kit.BOT_NAME, base_url=f"{live_server}/v1", api_key=api_key,
                                   max_retries=0, timeout=60)
    message = await model.ainvoke(QUESTION)
    assert isinstance(message.content, str) and message.content.strip()
    streamed = "".join([str(chunk.content) async for chunk in model.astream(QUESTION)])
    assert streamed.strip()
