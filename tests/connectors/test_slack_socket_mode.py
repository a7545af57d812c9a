"""Socket Mode (``botkit slack --socket``): events over a WebSocket, answers over the Web API."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from connectors.slack.socket_mode import run_socket_mode
from tests.helpers.slack_server import make_bot
from tests.helpers.slack_stub import BOT_USER_ID, SlackStub, SocketModeStub, event_body


async def test_socket_mode_answers_once_and_acknowledges_every_envelope(tmp_path: Path) -> None:
    event = {"type": "app_mention", "channel": "CSOCKET", "user": "U1", "ts": "1700000030.000100",
             "text": f"<@{BOT_USER_ID}> hello over the socket", "client_msg_id": "socket-1"}
    envelope = {"envelope_id": "env-1", "type": "events_api", "accepts_response_payload": False,
                "retry_attempt": 0, "retry_reason": "", "payload": json.loads(event_body(event, event_id="EvSocket"))}
    with SocketModeStub() as socket, SlackStub(socket_url=socket.url) as stub:
        bot = make_bot(tmp_path / "bot", database_url=f"sqlite:///{tmp_path / 'botkit.db'}", api_url=stub.api_url)
        settings = bot.config.slack.model_copy(update={"app_token": "xapp-test", "signing_secret": None})
        stop = asyncio.Event()
        running = asyncio.create_task(run_socket_mode(bot, settings=settings, stop=stop))
        try:
            await asyncio.to_thread(socket.wait_connected)
            socket.send(envelope)
            socket.send({**envelope, "envelope_id": "env-2", "retry_attempt": 1, "retry_reason": "timeout"})
            calls = await stub.wait_for(lambda calls: any(c.method == "chat.update" for c in calls))
            await asyncio.sleep(0.5)
            assert sorted(socket.acks) == ["env-1", "env-2"]
            (update,) = [c for c in stub.snapshot() if c.method == "chat.update"]
            assert update.args["text"] == "[scripted] hello over the socket"
            assert len([c for c in calls if c.method == "chat.postMessage"]) == 1
        finally:
            stop.set()
            await asyncio.wait_for(running, timeout=15)


def test_the_cli_names_the_missing_tokens(tmp_path: Path) -> None:
    from botkit.cli import app

    (tmp_path / "bot.yaml").write_text("name: demo\n", encoding="utf-8")
    runner = CliRunner(env={"BOTKIT_TEST_POSTGRES_URL": None, "SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": None})
    result = runner.invoke(app, ["slack", "--socket", "--bot", str(tmp_path)])
    assert result.exit_code == 2 and "slack.app_token" in result.output and "SLACK_APP_TOKEN" in result.output
    http = runner.invoke(app, ["slack", "--bot", str(tmp_path)])
    assert http.exit_code == 2 and "botkit serve" in http.output and "/slack/events" in http.output


@pytest.mark.parametrize("variable", ["SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN"])
def test_tokens_come_from_slacks_usual_variables(tmp_path: Path, variable: str) -> None:
    from botkit.config import load_config

    key = variable[len("SLACK_"):].lower()
    assert getattr(load_config(tmp_path, {variable: "from-env"}).slack, key) == "from-env"
    (tmp_path / "bot.yaml").write_text(f"slack:\n  {key}: from-yaml\n", encoding="utf-8")
    assert getattr(load_config(tmp_path, {variable: "from-env"}).slack, key) == "from-yaml"
