"""Events acknowledged by a worker that died are answered after a restart, exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from botkit.store import SQLConversationStore
from tests.helpers.slack_stub import BOT_USER_ID, SlackCall, SlackStub, event_body, signed_headers

ROOT = Path(__file__).resolve().parents[2]
ANSWER = "You can reset it from the login page [1]."


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def served(tmp_path: Path, stub: SlackStub, port: int, *, first_delay: float) -> Iterator[subprocess.Popen[bytes]]:
    """The bot's web app in a child process (``tests/helpers/slack_server.py``), ready to serve."""
    command = [sys.executable, "-m", "tests.helpers.slack_server", "--root", str(tmp_path / "bot"),
               "--database-url", f"sqlite:///{tmp_path / 'botkit.db'}", "--api-url", stub.api_url,
               "--port", str(port), "--first-delay", str(first_delay), "--grace", "0.5"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else "server died"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _answers(calls: list[SlackCall]) -> list[SlackCall]:
    return [c for c in calls if c.method in ("chat.update", "chat.postMessage") and c.args.get("text") == ANSWER]


@pytest.mark.faults
def test_an_event_acked_by_a_killed_worker_is_answered_once_after_restart(tmp_path: Path) -> None:
    event = {"type": "app_mention", "channel": "CCRASH", "user": "U1", "ts": "1700000020.000100",
             "text": f"<@{BOT_USER_ID}> how do I reset my password?", "client_msg_id": "crash-1"}
    body = event_body(event, event_id="EvCrash")
    port = _free_port()
    with SlackStub() as stub:
        with served(tmp_path, stub, port, first_delay=30) as worker:  # the answer would take 30 s
            response = httpx.post(f"http://127.0.0.1:{port}/slack/events", content=body, headers=signed_headers(body))
            assert response.status_code == 200
            worker.kill()  # kill -9 right after the ack
            worker.wait()
        assert not _answers(stub.snapshot())
        with served(tmp_path, stub, port, first_delay=0):
            stub.wait_for_sync(lambda calls: bool(_answers(calls)), timeout=30)
            time.sleep(1.0)  # room for a (wrong) second answer
            (answer,) = _answers(stub.snapshot())
            placeholders = [c for c in stub.calls_to("chat.postMessage") if c.args["text"] == "Looking that up…"]
        assert answer.method == "chat.update" and answer.args["channel"] == "CCRASH"
        assert answer.args["ts"] in {p.response["ts"] for p in placeholders}
        assert {p.args["thread_ts"] for p in placeholders} == {"1700000020.000100"}
        assert len(placeholders) <= 2  # one, unless the worker died between posting it and recording it


async def test_pending_events_are_taken_over_once(store: SQLConversationStore) -> None:
    event_id = f"EvPending{time.monotonic_ns()}"
    assert await store.claim_event(channel="slack", event_id=event_id, payload={"event_id": event_id, "n": 1})
    assert [e for e in await store.pending_events(channel="slack", older_than_s=5) if e.event_id == event_id] == []
    await asyncio.sleep(0.3)
    taken = await asyncio.gather(*(store.pending_events(channel="slack", older_than_s=0.2) for _ in range(3)))
    mine = [e for batch in taken for e in batch if e.event_id == event_id]
    assert len(mine) == 1 and mine[0].payload == {"event_id": event_id, "n": 1}  # one worker takes it
    await store.set_event_status(channel="slack", event_id=event_id, status="done")
    await asyncio.sleep(0.3)
    assert all(e.event_id != event_id for e in await store.pending_events(channel="slack", older_than_s=0.2))
