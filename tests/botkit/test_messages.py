"""The value objects' JSON form (the reply object of the HTTP API, SSE ``done`` events)."""

from __future__ import annotations

import dataclasses
import json

from botkit.messages import Citation, Reply


def _reply() -> Reply:
    citations = [Citation(1, "account/reset.md", "Reset", "Use the sign-in page.", "Steps", "https://x/reset"),
                 Citation(2, "faq.csv#3", "FAQ", "Sixty minutes.")]
    return Reply(conversation_id="c1", text="Reset it [1][2].", citations=citations, backend="extractive",
                 message_id=7, reply_to=6, latency_ms=12.5, prompt_tokens=40, completion_tokens=9)


def test_reply_to_dict_is_every_field_with_citations_as_dicts() -> None:
    reply = _reply()
    data = reply.to_dict()
    assert list(data) == [f.name for f in dataclasses.fields(Reply)]
    expected = dataclasses.asdict(reply)  # the deep-copying reference
    assert data == expected
    assert data["citations"][0] == {"number": 1, "source": "account/reset.md", "title": "Reset",
                                    "snippet": "Use the sign-in page.", "section": "Steps", "url": "https://x/reset"}
    assert json.loads(json.dumps(data)) == expected  # JSON-ready


def test_to_dict_returns_new_containers() -> None:
    reply = _reply()
    data = reply.to_dict()
    data["citations"].append({"number": 9})
    data["citations"][0]["title"] = "changed"
    assert len(reply.citations) == 2 and reply.citations[0].title == "Reset"
    assert reply.to_dict()["citations"][0]["title"] == "Reset"
