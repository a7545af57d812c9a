"""Two ``botkit serve`` workers on PostgreSQL and a Chroma server, under load and faults.

Real processes on 127.0.0.1 (see ``conftest.py``); clients speak HTTP and retry a message
with its ``client_message_id`` on 409, 503 and dropped connections, as the API
documents. Every test then checks the database, not only the HTTP answers.

Ordering guarantee (what test 1 checks): turns of one conversation never overlap (the
turn lock, across workers); every user message is stored once (its
``client_message_id``) and answered exactly once, by a reply numbered after it; messages
a client sends one after the other are stored and answered in that order. Two messages
of one conversation that arrive at the same instant (on different workers) are both
stored before either is answered, and are answered one after the other in the order
their turns take the lock, which can differ from the order they were stored in: the
test counts how often it did.

Sizes (CI default / ``BOTKIT_FAULTS_FULL=1``) are in each test. Tests run in file order
and leave the topology healthy; killing a worker comes last.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from typing import Any

import pytest

from tests.helpers.openai_stub import StubReply
from tests.helpers.processes import (
    FULL,
    QUESTIONS,
    Client,
    Sent,
    audit,
    log_records,
    metric,
    pg_execute,
    size,
    wait_workers_ready,
)

pytestmark = pytest.mark.faults

KB_DOWN = "can't reach our knowledge base"
FAILED = "couldn't generate an answer"
STUB_BACKEND = "openai:stub-model"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] if ordered else 0.0


async def converse(client: Client, conversation_id: str, turns: int, offset: int, *, stream: bool = False,
                   pause_s: float = 0.0) -> None:
    """``turns`` messages, one after the other."""
    for turn in range(turns):
        await client.send(conversation_id, QUESTIONS[(offset + turn) % len(QUESTIONS)],
                          client_message_id=f"m{turn}-{uuid.uuid4().hex[:8]}", stream=stream)
        if pause_s:
            await asyncio.sleep(pause_s)


async def load_until(client: Client, conversations: list[str], stop: asyncio.Event, *, pause_s: float = 0.05) -> None:
    """Each conversation sends one message after the other until ``stop`` is set."""

    async def one(index: int, conversation_id: str) -> None:
        turn = 0
        while not stop.is_set() and turn < 10_000:
            await client.send(conversation_id, QUESTIONS[(index + turn) % len(QUESTIONS)],
                              client_message_id=f"m{turn}-{uuid.uuid4().hex[:8]}")
            turn += 1
            await asyncio.sleep(pause_s)

    await asyncio.gather(*(one(i, c) for i, c in enumerate(conversations)))


def server_errors(topology: Any, since: float) -> list[dict[str, Any]]:
    """Error-level log lines (and tracebacks) the workers wrote since ``since`` (a time.time())."""
    found = []
    for record in log_records(topology.serve.log) + log_records(topology.serve_b.log):
        stamp = record.get("ts", "")
        try:
            when = time.mktime(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
        except ValueError:
            continue
        if when >= since - 1 and (record.get("level") in ("error", "critical") or "exception" in record):
            found.append(record)
    return found


# -- 1 --------------------------------------------------------------------------------------


def test_concurrent_turns_are_never_lost_duplicated_or_reordered(topology: Any, run: Any) -> None:
    """CI: 12 conversations x 5 turns + 6 simultaneous pairs; full: 150 x 5 + 40 pairs."""
    conversations, turns, pairs = size(12, 150), 5, size(6, 40)

    async def scenario() -> tuple[list[Sent], set[str], list[tuple[str, str]], float]:
        # Clients keep retrying (same client_message_id) for up to 5 minutes: at full size the
        # two cores are overloaded many times over and a turn can wait longer than a minute.
        async with Client(topology.urls, give_up_s=300) as client:
            talkers = await asyncio.gather(*(client.conversation() for _ in range(conversations)))
            paired = await asyncio.gather(*(client.conversation() for _ in range(pairs)))
            pair_sends: list[tuple[str, str]] = []

            async def pair(conversation_id: str) -> None:
                # Two fresh connections, so the kernel may hand them to different workers.
                left = Client(topology.urls, connections=1, give_up_s=300)
                right = Client(topology.urls, connections=1, give_up_s=300)
                left.tokens = right.tokens = client.tokens
                try:  # one to server A, one to server B, at once
                    a, b = await asyncio.gather(left.send(conversation_id, QUESTIONS[0], server=0),
                                                right.send(conversation_id, QUESTIONS[1], server=1))
                finally:
                    await left.aclose()
                    await right.aclose()
                client.sent += [a, b]
                pair_sends.append((a.client_message_id, b.client_message_id))

            started = time.monotonic()
            await asyncio.gather(
                *(converse(client, c, turns, i, stream=i % 3 == 0) for i, c in enumerate(talkers)),
                *(pair(c) for c in paired))
            return client.sent, set(talkers), pair_sends, time.monotonic() - started

    sent, sequential, pair_sends, elapsed = run(scenario())
    result = run(audit(topology.database_url, sent, sequential=sequential))
    # Which worker answered each message of a pair (from the turn log lines).
    records = topology.turn_records()
    by_message = {r.get("reply_to"): r.get("pid") for r in records}
    user_ids = {(s.client_message_id): (s.reply or {}).get("reply_to") for s in sent}
    split = sum(1 for a, b in pair_sends if by_message.get(user_ids.get(a)) != by_message.get(user_ids.get(b)))
    topology.report("concurrency", {
        "turns": len(sent), "seconds": round(elapsed, 1), "turns_per_s": round(len(sent) / elapsed, 1),
        **result.problems(), "pairs": pairs, "pairs_on_two_workers": split,
        "statuses": dict(Counter(str(status) for s in sent for status in s.statuses)),
        "not_acknowledged": [s.statuses for s in sent if not s.acknowledged][:5],
        "slowest_s": round(max(sum(s.latencies) for s in sent), 1),
        "turns_per_worker": dict(Counter(r.get("pid") for r in records))})
    assert result.acknowledged == len(sent)
    assert result.problems() == dict.fromkeys(result.problems(), 0), result


# -- 2 --------------------------------------------------------------------------------------


def test_model_server_faults_fall_back_within_the_deadline(topology: Any, run: Any) -> None:
    """429 (20%, Retry-After 1), 500 (5%), hangs (2%), and a 3 s outage in the middle.

    CI: 12 conversations x 10 turns; full: 40 x 40. At least 99.5% of turns answered
    (the extractive fallback counts), none later than its deadline (turn_timeout_s, plus
    2 s for retrieval and the store under load); the stub's circuit opens and closes
    again (read from /metrics).
    """
    conversations, turns = size(12, 40), size(10, 40)
    stub = topology.stub

    async def scenario() -> tuple[Client, str, str, float]:
        async with Client(topology.urls, give_up_s=30) as client:
            before = await client.metrics()
            ids = await asyncio.gather(*(client.conversation() for _ in range(conversations)))
            stub.set_faults(rate_limited=0.20, server_error=0.05, hang=0.02, retry_after="1", hang_s=30)
            stub.enqueue(*(StubReply(text="hanging", delay_s=30) for _ in range(2)))  # at least two hangs
            started = time.monotonic()

            async def outage() -> None:
                await asyncio.sleep(2.0)
                stub.set_faults(outage=True)
                await asyncio.sleep(3.0)
                stub.set_faults(rate_limited=0.20, server_error=0.05, hang=0.02, retry_after="1", hang_s=30)

            await asyncio.gather(outage(), *(converse(client, c, turns, i, pause_s=0.1) for i, c in enumerate(ids)))
            # The circuits close once a half-open trial succeeds: a few more turns after the cool-down.
            await asyncio.sleep(topology.breaker_cooldown_s + 0.5)
            for _ in range(20):
                await asyncio.gather(*(converse(client, c, 1, i) for i, c in enumerate(ids[:4])))
                after = await client.metrics()
                if metric(after, "botkit_circuit_transitions_total", backend=STUB_BACKEND, state="closed") > metric(
                        before, "botkit_circuit_transitions_total", backend=STUB_BACKEND, state="closed"):
                    break
            return client, before, await client.metrics(), time.monotonic() - started

    try:
        client, before, after, elapsed = run(scenario())
    finally:
        stub.set_faults()
    sent = client.sent
    answered = [s for s in sent if s.reply is not None and FAILED not in s.reply["text"]]
    fallbacks = sum(1 for s in answered if s.reply and s.reply.get("backend") != STUB_BACKEND)
    slowest = max(s.latencies[-1] for s in sent)
    late = [s for s in sent if s.latencies[-1] > topology.turn_timeout_s + 2.0]

    def delta(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    figures = {
        "turns": len(sent), "answered": len(answered), "success_pct": round(100 * len(answered) / len(sent), 2),
        "fallback_extractive": fallbacks, "slowest_s": round(slowest, 2),
        "p99_s": round(percentile([s.latencies[-1] for s in sent], 99), 2), "late": len(late),
        "stub": dict(stub.counts), "statuses": dict(client.statuses), "seconds": round(elapsed, 1),
        "circuit_opened": delta("botkit_circuit_transitions_total", backend=STUB_BACKEND, state="open"),
        "circuit_closed": delta("botkit_circuit_transitions_total", backend=STUB_BACKEND, state="closed"),
        "errors_by_kind": {k: delta("botkit_backend_errors_total", backend=STUB_BACKEND, kind=k)
                           for k in ("rate_limited", "server_error", "timeout", "circuit_open")},
    }
    topology.report("model-faults", figures)
    assert len(answered) >= 0.995 * len(sent), figures
    assert not late, figures
    assert figures["circuit_opened"] >= 1 and figures["circuit_closed"] >= 1, figures
    assert figures["errors_by_kind"]["rate_limited"] >= 1 and figures["errors_by_kind"]["timeout"] >= 1, figures
    result = run(audit(topology.database_url, sent))
    assert result.problems() == dict.fromkeys(result.problems(), 0), result


# -- 3 --------------------------------------------------------------------------------------


def test_chroma_down_degrades_clearly_and_recovers(topology: Any, run: Any) -> None:
    """``chroma run`` stopped under load, then started again (CI: 8 conversations; full: 30).

    While it is down every answer is the clear "can't reach the knowledge base" reply,
    fast (no long timeout) and never an HTTP error; once it is back, answers recover by
    themselves.
    """
    conversations = size(8, 30)

    async def scenario() -> dict[str, Any]:
        async with Client(topology.urls, give_up_s=30) as client:
            ids = await asyncio.gather(*(client.conversation() for _ in range(conversations)))
            stop = asyncio.Event()
            phases: dict[str, float] = {}

            async def faults() -> None:
                await asyncio.sleep(1.5)
                await asyncio.to_thread(topology.stop_chroma)
                phases["down"] = time.monotonic()
                await asyncio.sleep(4.0)
                phases["restarting"] = time.monotonic()
                await asyncio.to_thread(topology.start_chroma)
                phases["up"] = time.monotonic()
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:  # until every conversation got a real answer again
                    await asyncio.sleep(0.5)
                    recent = [s for s in client.sent if s.started > phases["up"] and s.reply]
                    if len({s.conversation_id for s in recent if KB_DOWN not in s.reply["text"]}) == len(ids):
                        break
                stop.set()

            await asyncio.gather(faults(), load_until(client, ids, stop, pause_s=0.1))
            return {"client": client, **phases}

    outcome = run(scenario())
    client: Client = outcome["client"]
    sent = client.sent
    during = [s for s in sent if outcome["down"] + 0.5 < s.started < outcome["restarting"]]
    kb_down_during = [s for s in during if s.reply and KB_DOWN in s.reply["text"]]
    after_up = [s for s in sent if s.started > outcome["up"] and s.reply]
    first_ok = min((s.started for s in after_up if KB_DOWN not in s.reply["text"]), default=float("nan"))
    figures = {
        "turns": len(sent), "during_outage": len(during), "kb_down_replies": len(kb_down_during),
        "outage_latency_max_s": round(max((s.latencies[-1] for s in during), default=0.0), 2),
        "chroma_restart_s": round(outcome["up"] - outcome["restarting"], 1),
        "recovered_after_s": round(first_ok - outcome["up"], 2),
        "statuses": dict(client.statuses),
    }
    topology.report("chroma-down", figures)
    assert during and len(kb_down_during) == len(during), figures
    assert figures["outage_latency_max_s"] < 3.0, figures
    assert set(client.statuses) == {200}, figures
    last = {s.conversation_id: s for s in sent if s.reply}
    assert all(KB_DOWN not in s.reply["text"] for s in last.values()), "not every conversation recovered"
    result = run(audit(topology.database_url, sent))
    assert result.problems() == dict.fromkeys(result.problems(), 0), result


# -- 4 --------------------------------------------------------------------------------------


def test_postgres_connections_killed_workers_recover(topology: Any, run: Any) -> None:
    """``pg_terminate_backend`` of every botkit connection (3 times), then a 3 s outage
    (the database refuses connections), under load (CI: 8 conversations; full: 40).

    Requests meanwhile get 503 + Retry-After, never a 500 or a traceback; the workers
    recover without a restart; every acknowledged message is in the database, and
    clients' retries end with exactly one turn per message.
    """
    conversations = size(8, 40)
    database = topology.database_url.rsplit("/", 1)[1]
    pids_before = [*topology.workers(), topology.serve_b.pid]
    since = time.time()
    kill = ("SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()")

    async def scenario() -> dict[str, Any]:
        async with Client(topology.urls, give_up_s=60) as client:
            ids = await asyncio.gather(*(client.conversation() for _ in range(conversations)))
            stop = asyncio.Event()
            info: dict[str, Any] = {"terminated": 0}

            async def faults() -> None:
                await asyncio.sleep(1.5)
                for _ in range(3):
                    rows = await pg_execute(topology.database_url, kill, database, database="postgres")
                    info["terminated"] += rows[0]["n"]
                    await asyncio.sleep(1.0)
                await pg_execute(topology.database_url, f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false',
                                 database="postgres")
                rows = await pg_execute(topology.database_url, kill, database, database="postgres")
                info["terminated"] += rows[0]["n"]
                info["outage_from"] = time.monotonic()
                await asyncio.sleep(3.0)
                await pg_execute(topology.database_url, f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true',
                                 database="postgres")
                info["outage_to"] = time.monotonic()
                await asyncio.sleep(3.0)
                stop.set()

            await asyncio.gather(faults(), load_until(client, ids, stop, pause_s=0.1))
            # After the outage: one more message per conversation, answered at the first try.
            final = await asyncio.gather(*(client.send(c, QUESTIONS[2]) for c in ids))
            info["final_first_try"] = sum(1 for s in final if s.statuses == [200])
            return {"client": client, **info}

    outcome = run(scenario())
    client: Client = outcome["client"]
    result = run(audit(topology.database_url, client.sent))
    errors = server_errors(topology, since)
    figures = {
        "turns": len(client.sent), "acknowledged": result.acknowledged, "statuses": dict(client.statuses),
        "connections_terminated": outcome["terminated"], "missing_retry_after": client.missing_retry_after,
        "final_first_try": f"{outcome['final_first_try']}/{conversations}", **result.problems(),
        "error_log_lines": len(errors), "workers_restarted": [*topology.workers(), topology.serve_b.pid] != pids_before,
    }
    topology.report("postgres-killed", figures)
    assert 500 not in client.statuses, figures
    assert client.statuses.get(503, 0) >= 1, figures  # the outage was seen, as 503s
    assert client.missing_retry_after == 0, figures
    assert result.acknowledged == len(client.sent), figures
    assert result.problems() == dict.fromkeys(result.problems(), 0), figures
    assert [*topology.workers(), topology.serve_b.pid] == pids_before and topology.serve_b.alive(), "a restart"
    assert outcome["final_first_try"] == conversations, figures
    assert not [e for e in errors if "Traceback" in str(e.get("exception", ""))
                and "ASGI" in str(e.get("message", ""))], errors[:3]


# -- 5 (last: the restarted worker loads its models again) ----------------------------------


def test_kill_9_a_worker_under_load(topology: Any, run: Any) -> None:
    """``kill -9`` one of the two workers under load; uvicorn starts a new one (CI: started;
    full size: started and serving).

    CI: 10 conversations; full: 40. Every message that got a 200 is in the database,
    every message (clients retry with the same ``client_message_id``) gets exactly one
    turn, and no conversation stays locked: each takes a new message within the lock
    timeout right after the kill.
    """
    conversations = size(10, 40)
    pids = topology.workers()
    assert len(pids) == 2, pids
    victim = pids[0]

    async def scenario() -> dict[str, Any]:
        async with Client(topology.urls, give_up_s=90) as client:
            ids = await asyncio.gather(*(client.conversation() for _ in range(conversations)))
            stop = asyncio.Event()
            info: dict[str, Any] = {}

            async def crash() -> None:
                await asyncio.sleep(2.0)
                import os
                import signal

                os.kill(victim, signal.SIGKILL)
                info["killed_at"] = time.monotonic()
                await asyncio.sleep(3.0)
                stop.set()

            await asyncio.gather(crash(), load_until(client, ids, stop, pause_s=0.05))
            # Right after: every conversation takes a new message (none stays locked).
            started = time.monotonic()
            after = await asyncio.gather(*(client.send(c, QUESTIONS[3]) for c in ids))
            info["after_kill_max_s"] = max(time.monotonic() - started, 0.0)
            info["after_ok"] = sum(1 for s in after if s.reply)
            return {"client": client, **info}

    outcome = run(scenario())
    client: Client = outcome["client"]
    if FULL:  # wait until the new worker has loaded its models and serves
        new_pids = wait_workers_ready(topology.serve, 2, since_pids=set(pids), timeout=180)
    else:  # CI: uvicorn has started a replacement (it needs tens of seconds to load its models)
        deadline = time.monotonic() + 30
        while len(new_pids := topology.workers()) != 2 or victim in new_pids:
            assert time.monotonic() < deadline, new_pids
            time.sleep(0.2)
    restart_s = time.monotonic() - outcome["killed_at"]
    result = run(audit(topology.database_url, client.sent))
    retried = [s for s in client.sent if len(s.statuses) > 1]
    figures = {
        "turns": len(client.sent), "acknowledged": result.acknowledged, "statuses": dict(client.statuses),
        "retried_messages": len(retried), **result.problems(),
        "after_kill_all_answered_s": round(outcome["after_kill_max_s"], 2),
        "after_kill_ok": f"{outcome['after_ok']}/{conversations}",
        ("worker_serving_again_s" if FULL else "worker_respawned_s"): round(restart_s, 1),
        "workers": f"{pids} -> {new_pids}",
    }
    topology.report("kill-9", figures)
    assert victim not in new_pids and len(new_pids) == 2
    assert result.acknowledged == len(client.sent), figures
    assert result.problems() == dict.fromkeys(result.problems(), 0), figures
    assert outcome["after_ok"] == conversations and outcome["after_kill_max_s"] < topology.lock_timeout_s + 5, figures

