"""A real answer in Slack: the example help centre (extractive backend, real embeddings).

Uses the session's ``web_bot`` (``tests/connectors/conftest.py``: part of
``examples/faq-agent`` copied to a temporary folder, ingested once), mounted with
``connectors.slack.asgi.mount`` in an app of its own and served by uvicorn.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from botkit.bot import Bot
from botkit.config import SlackSettings
from connectors.slack.asgi import mount
from tests.helpers.slack_stub import BOT_USER_ID, SIGNING_SECRET, TOKEN, SlackStub, event_body, signed_headers

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_a_mention_gets_a_grounded_cited_answer(web_bot: Bot, kit: Any) -> None:
    with SlackStub() as stub:
        app = FastAPI()
        mount(app, web_bot, settings=SlackSettings(bot_token=TOKEN, signing_secret=SIGNING_SECRET, api_url=stub.api_url))
        event = {"type": "app_mention", "channel": "CHELP", "user": "U1", "ts": "1700000040.000100",
                 "text": f"<@{BOT_USER_ID}> How do I reset my password?", "client_msg_id": "real-1"}
        body = event_body(event, event_id="EvReal")
        async with kit.serve(app) as url, httpx.AsyncClient(base_url=url) as http:
            response = await http.post("/slack/events", content=body, headers=signed_headers(body))
            assert response.status_code == 200
            calls = await stub.wait_for(lambda calls: any(c.args.get("blocks") for c in calls), timeout=30)
    (answer,) = [c for c in calls if c.method == "chat.update" and c.args.get("blocks")]
    text = answer.args["text"]
    assert "reset your password" in text and "[1]" in text and "**" not in text  # Markdown became mrkdwn
    (citations,) = [b for b in answer.args["blocks"] if b["type"] == "context"]
    sources = [element["text"] for element in citations["elements"]]
    assert sources[0].startswith("[1] ") and any("password" in source.lower() for source in sources), sources
