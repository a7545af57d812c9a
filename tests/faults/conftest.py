"""The scale-out topology the fault tests share, with real processes on 127.0.0.1.

One per test session (starting it costs most of the run): a scratch PostgreSQL database
on ``BOTKIT_TEST_POSTGRES_URL``'s server, ``chroma run`` on a free port, the OpenAI stub
(:class:`~tests.helpers.processes.FaultyStub`, in this process), ``botkit serve
--workers 2`` (server A) and a second ``botkit serve`` (server B, one worker: "another
machine") using all three. Clients spread requests over A and B at random, like a load
balancer without affinity, so consecutive messages of a conversation are answered by
different processes; messages meant to arrive "at the same instant on different
workers" go one to A and one to B. Tests change faults on it and must leave it healthy; the
one that kills a worker runs last in its module.

Sizes: CI sizes by default; ``BOTKIT_FAULTS_FULL=1`` runs the full sizes (see each test).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.processes import (
    FaultyStub,
    Proc,
    chroma_command,
    free_port,
    log_records,
    make_bot_dir,
    scratch_database,
    start_botkit,
    start_chroma,
    wait_botkit,
    wait_log,
    worker_pids,
)

TURN_TIMEOUT_S = 8.0
LOCK_TIMEOUT_S = 10.0
OPENAI_TIMEOUT_S = 3.0
BREAKER_COOLDOWN_S = 2.0
DATABASE_POOL_SIZE = 4
DATABASE_MAX_TURN_CONNECTIONS = 16


@dataclass
class Topology:
    """The running processes and where they are."""

    url: str
    url_b: str
    database_url: str
    bot: Path
    serve: Proc
    serve_b: Proc
    chroma: Proc
    chroma_port: int
    chroma_path: Path
    stub: FaultyStub
    tmp: Path
    turn_timeout_s: float = TURN_TIMEOUT_S
    lock_timeout_s: float = LOCK_TIMEOUT_S
    breaker_cooldown_s: float = BREAKER_COOLDOWN_S

    @property
    def urls(self) -> list[str]:
        return [self.url, self.url_b]

    def workers(self) -> list[int]:
        """Server A's worker processes."""
        return worker_pids(self.serve)

    def turn_records(self) -> list[dict[str, Any]]:
        """The turn log lines of both servers."""
        return [r for log in (self.serve.log, self.serve_b.log) for r in log_records(log) if r.get("event") == "turn"]

    def stop_chroma(self) -> None:
        self.chroma.stop()

    def start_chroma(self) -> None:
        self.chroma = start_chroma(self.chroma_path, self.chroma_port, self.tmp / "chroma.log")

    def report(self, name: str, figures: dict[str, Any]) -> None:
        """Print a test's figures (shown with ``-s``) and keep them in ``<tmp>/figures.txt``."""
        line = f"[{name}] " + ", ".join(f"{k}={v}" for k, v in figures.items())
        print("\n" + line)
        with (self.tmp / "figures.txt").open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")
        summary = os.environ.get("BOTKIT_FAULTS_REPORT")
        if summary:
            with open(summary, "a", encoding="utf-8") as handle:
                handle.write(line + "\n")


@pytest.fixture(scope="session")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    base = os.environ.get("BOTKIT_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("set BOTKIT_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/test for the fault tests")
    if chroma_command() is None:
        pytest.skip("the chroma CLI (installed with chromadb) is missing")
    pytest.importorskip("psutil")
    tmp = tmp_path_factory.mktemp("topology")
    stub = FaultyStub().start()
    started = time.monotonic()
    try:
        with scratch_database(base, prefix="botkit_faults") as database_url:
            chroma_port, port, port_b = free_port(), free_port(), free_port()
            chroma_path = tmp / "chroma-data"
            chroma = start_chroma(chroma_path, chroma_port, tmp / "chroma.log")
            bot = make_bot_dir(
                tmp / "bot", stub_url=stub.base_url,
                openai_extra=f"  timeout_s: {OPENAI_TIMEOUT_S}\n  max_retries: 1\n",
                extra=f"limits:\n  turn_timeout_s: {TURN_TIMEOUT_S}\n  lock_timeout_s: {LOCK_TIMEOUT_S}\n"
                      f"  breaker_failures: 3\n  breaker_cooldown_s: {BREAKER_COOLDOWN_S}\n")
            # Three botkit processes share PostgreSQL's default 100 connections with the test
            # run itself: small pools (deploy/README.md, "Database pools").
            env = {"BOTKIT_DATABASE_URL": database_url,
                   "BOTKIT_KNOWLEDGE__CHROMA_URL": f"http://127.0.0.1:{chroma_port}",
                   "BOTKIT_DATABASE_POOL_SIZE": str(DATABASE_POOL_SIZE),
                   "BOTKIT_DATABASE_MAX_TURN_CONNECTIONS": str(DATABASE_MAX_TURN_CONNECTIONS)}
            serve = serve_b = None
            try:
                serve = start_botkit(bot, port, tmp / "serve.log", workers=2, env=env, wait=False)
                wait_log(serve, "Started parent process", timeout=300)  # A has ingested; B may start
                serve_b = start_botkit(bot, port_b, tmp / "serve-b.log", workers=1, env=env, wait=False)
                wait_botkit(serve, port, 2, timeout=300)
                wait_botkit(serve_b, port_b, 1, timeout=300)
                topology = Topology(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port_b}", database_url, bot,
                                    serve, serve_b, chroma, chroma_port, chroma_path, stub, tmp)
                topology.report("topology", {"startup_s": round(time.monotonic() - started, 1),
                                             "workers": len(topology.workers()) + 1})
                yield topology
            finally:
                for proc in (serve, serve_b):
                    if proc is not None:
                        proc.stop()
                topology_chroma = locals().get("topology")
                (topology_chroma.chroma if topology_chroma else chroma).stop()
    finally:
        stub.stop()


@pytest.fixture
def run() -> Any:
    """Run a coroutine to completion (the fault tests are sync: they drive processes)."""
    return asyncio.run
