"""Real processes for fault tests and benchmarks, all on 127.0.0.1.

- :class:`Proc`: a child process in its own session, logging to a file, stopped politely
  then forcibly; :meth:`Proc.kill9` for crash tests.
- :func:`start_chroma`: ``chroma run --path DIR --host 127.0.0.1 --port P``.
- :func:`start_botkit`: ``botkit serve --bot DIR --workers N`` (waits for ``/readyz``);
  :func:`worker_pids` lists its uvicorn worker processes.
- :func:`scratch_database`: a PostgreSQL database of its own, dropped afterwards.
- :class:`FaultyStub`: the OpenAI stub (:mod:`tests.helpers.openai_stub`) answering with
  fault rates (429 + ``Retry-After``, 500, hangs), switchable at run time.
- :class:`Client`: a web-API client that retries a message with the same
  ``client_message_id`` (the documented way to survive 409, 503 and dropped
  connections) and records every attempt.

Every wait here is bounded in time; every loop is bounded in count or time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from typing_extensions import Self

from tests.helpers.openai_stub import OpenAIStub, StubReply
from tests.helpers.postgres import pg_execute, scratch_database

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "faq-agent"
PUBLIC_KEY = "pk_faults_0123456789abcdef"
KNOWLEDGE = ("account/reset-password.md", "account/two-factor-authentication.md",
             "billing/plans-and-pricing.md", "integrations/slack.md")
QUESTIONS = ("How do I reset my password?", "How do I turn on two-factor authentication?",
             "What plans do you offer and how much do they cost?", "How do I connect the Slack integration?",
             "My password reset link expired, what now?", "Can I pay yearly for a plan?")
QUIET_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False",
             "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


FULL = os.environ.get("BOTKIT_FAULTS_FULL") == "1"


def size(ci: int, full: int) -> int:
    """A count for a fault test: ``full`` under ``BOTKIT_FAULTS_FULL=1``, else ``ci``."""
    return full if FULL else ci


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Proc:
    """A child process in its own session, its output in ``log``."""

    def __init__(self, cmd: list[str], log: Path, *, env: Mapping[str, str] | None = None, cwd: Path = REPO) -> None:
        self.cmd, self.log = cmd, log
        log.parent.mkdir(parents=True, exist_ok=True)
        self._handle = log.open("ab")
        self.popen = subprocess.Popen(cmd, env={**os.environ, **QUIET_ENV, **(env or {})}, stdout=self._handle,
                                      stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, chars: int = 3000) -> str:
        """The end of the process's log."""
        try:
            return self.log.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 20.0) -> None:
        """SIGINT the process group, then SIGKILL it after ``timeout`` seconds."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGINT)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)
        self._handle.close()

    def kill9(self) -> None:
        """SIGKILL the process itself (not its group)."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)


def wait_http(url: str, proc: Proc | None, *, timeout: float, ok: tuple[int, ...] = (200,)) -> None:
    """Poll ``url`` until it answers one of ``ok``; fail with the log's tail on timeout or exit."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.cmd[:3]} exited with {proc.popen.returncode}:\n{proc.tail()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code in ok:
                return
        time.sleep(0.25)
    raise RuntimeError(f"{url} not ready within {timeout:.0f}s:\n{proc.tail() if proc else ''}")


def chroma_command() -> str | None:
    """The ``chroma`` CLI (installed with chromadb), or ``None``."""
    found = shutil.which("chroma") or str(Path(sys.executable).with_name("chroma"))
    return found if Path(found).exists() else None


def start_chroma(path: Path, port: int, log: Path, *, timeout: float = 90) -> Proc:
    """``chroma run`` on 127.0.0.1:``port`` with its data in ``path``; waits for the heartbeat."""
    chroma = chroma_command()
    if chroma is None:
        raise RuntimeError("the chroma CLI is missing")
    proc = Proc([chroma, "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)], log)
    wait_http(f"http://127.0.0.1:{port}/api/v2/heartbeat", proc, timeout=timeout)
    return proc


def start_botkit(bot: Path, port: int, log: Path, *, workers: int = 2, env: Mapping[str, str] | None = None,
                 timeout: float = 240, wait: bool = True) -> Proc:
    """``botkit serve --workers N`` on 127.0.0.1:``port``; waits (unless ``wait=False``) until
    ``/readyz`` answers 200 and, with several workers, until every one has started."""
    cmd = [sys.executable, "-m", "botkit.cli", "serve", "--bot", str(bot), "--host", "127.0.0.1",
           "--port", str(port), "--workers", str(workers)]
    proc = Proc(cmd, log, env=env)
    if wait:
        wait_botkit(proc, port, workers, timeout=timeout)
    return proc


def wait_botkit(proc: Proc, port: int, workers: int, *, timeout: float = 240) -> None:
    """Wait until a ``botkit serve`` answers ``/readyz`` and all its workers have started."""
    started = time.monotonic()
    wait_http(f"http://127.0.0.1:{port}/readyz", proc, timeout=timeout)
    if workers > 1:
        wait_workers_ready(proc, workers, since_pids=set(), timeout=max(timeout - (time.monotonic() - started), 10))


def wait_log(proc: Proc, text: str, *, timeout: float) -> None:
    """Wait until ``text`` appears in the process's log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.cmd[:3]} exited with {proc.popen.returncode}:\n{proc.tail()}")
        if text in proc.tail(200_000):
            return
        time.sleep(0.25)
    raise RuntimeError(f"{text!r} not logged within {timeout:.0f}s:\n{proc.tail()}")


def worker_pids(proc: Proc) -> list[int]:
    """The uvicorn worker processes of a ``botkit serve --workers N`` process."""
    import psutil

    try:
        children = psutil.Process(proc.pid).children(recursive=False)
    except psutil.NoSuchProcess:
        return []
    # uvicorn's spawn start method adds a resource tracker: workers are the ones running our app.
    return sorted(c.pid for c in children if c.is_running() and "resource_tracker" not in " ".join(_cmdline(c)))


def _cmdline(process: Any) -> list[str]:
    try:
        return list(process.cmdline())
    except Exception:  # noqa: BLE001 - a process that just exited
        return []


def log_records(log: Path) -> list[dict[str, Any]]:
    """The JSON lines of a server log (other lines skipped)."""
    records = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                records.append(json.loads(line))
    return records


def wait_workers_ready(proc: Proc, count: int, *, since_pids: set[int], timeout: float) -> list[int]:
    """Wait until ``count`` workers run and the new ones (not in ``since_pids``) logged startup."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = worker_pids(proc)
        fresh = set(pids) - since_pids
        if len(pids) == count and fresh:
            started = {r.get("pid") for r in log_records(proc.log)
                       if "Application startup complete" in str(r.get("message", ""))}
            if fresh <= started:
                return pids
        time.sleep(0.5)
    raise RuntimeError(f"workers not back to {count} within {timeout:.0f}s:\n{proc.tail()}")


# -- PostgreSQL ------------------------------------------------------------------------------


# -- the model server ---------------------------------------------------------------------------


@dataclass
class Faults:
    """Fault rates of :class:`FaultyStub` (the rest answer normally)."""

    rate_limited: float = 0.0
    server_error: float = 0.0
    hang: float = 0.0
    retry_after: str = "1"
    hang_s: float = 60.0
    outage: bool = False  # every request gets a 500


class FaultyStub(OpenAIStub):
    """The OpenAI stub drawing each reply from fault rates (seeded; counts what it did)."""

    def __init__(self, *, text: str = "You can do that from your account settings [1].", seed: int = 7) -> None:
        super().__init__(default=StubReply(text=text))
        self.faults = Faults()
        self.counts: Counter[str] = Counter()
        self._random = random.Random(seed)
        self._draw_lock = threading.Lock()

    def set_faults(self, **rates: Any) -> None:
        """Replace the fault rates (keyword arguments of :class:`Faults`)."""
        self.faults = Faults(**rates)

    def _next(self) -> StubReply:
        with self._lock:
            queued = self._queue.popleft() if self._queue else None
        with self._draw_lock:
            faults, roll = self.faults, self._random.random()
        if queued is not None:  # scripted with enqueue(): served first, as in OpenAIStub
            kind, reply = ("hang" if queued.delay_s >= 5 else "queued"), queued
        elif faults.outage:
            kind, reply = "outage", StubReply.server_error()
        elif roll < faults.rate_limited:
            kind, reply = "rate_limited", StubReply.rate_limited(retry_after=faults.retry_after)
        elif roll < faults.rate_limited + faults.server_error:
            kind, reply = "server_error", StubReply.server_error()
        elif roll < faults.rate_limited + faults.server_error + faults.hang:
            kind, reply = "hang", StubReply(text=self.default.text, delay_s=faults.hang_s)
        else:
            kind, reply = "ok", super()._next()
        with self._draw_lock:
            self.counts[kind] += 1
        return reply


# -- the bot ---------------------------------------------------------------------------------


def make_bot_dir(root: Path, *, stub_url: str | None, openai_extra: str = "", extra: str = "") -> Path:
    """A bot directory: a slice of the example help centre, the stub first, extractive fallback.

    ``openai_extra``: more lines of the ``openai:`` section (indented); ``extra``: more
    top-level YAML."""
    for article in KNOWLEDGE:
        target = root / "knowledge" / article
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(EXAMPLE / "knowledge" / article, target)
    backends = '["openai:stub-model", "extractive"]' if stub_url else '["extractive"]'
    openai = f"openai:\n  base_url: {stub_url}\n  api_key: sk-faults-not-a-real-key-000000\n{openai_extra}" if stub_url else ""
    (root / "bot.yaml").write_text(
        f"name: faults\nbackends: {backends}\n{openai}"
        f"web:\n  public_key: {PUBLIC_KEY}\n  secret: faults-shared-secret-0123456789\n"
        "  rate_limit_per_minute: 0\n  conversation_rate_limit_per_minute: 0\n"
        "escalation:\n  enabled: false\n"
        "console:\n  enabled: false\n"
        f"{extra}", encoding="utf-8")
    return root


# -- the client ------------------------------------------------------------------------------


RETRY_STATUSES = {409, 429, 502, 503, 504}


@dataclass
class Sent:
    """One message as the client saw it."""

    conversation_id: str
    client_message_id: str
    text: str
    statuses: list[int | str] = field(default_factory=list)
    reply: dict[str, Any] | None = None
    started: float = 0.0
    latencies: list[float] = field(default_factory=list)

    @property
    def acknowledged(self) -> bool:
        return self.reply is not None


class Client:
    """The web API over real HTTP, retrying messages with their ``client_message_id``."""

    def __init__(self, base_url: str | list[str], *, give_up_s: float = 60.0, connections: int = 64,
                 seed: int = 11) -> None:
        urls = [base_url] if isinstance(base_url, str) else list(base_url)
        self.base_url = urls[0]
        self.give_up_s = give_up_s
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        timeout = httpx.Timeout(90.0, connect=5.0)
        self.servers = [httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) for url in urls]
        self.http = self.servers[0]
        self._random = random.Random(seed)
        self.tokens: dict[str, str] = {}
        self.sent: list[Sent] = []
        self.statuses: Counter[int | str] = Counter()
        self.missing_retry_after = 0  # 409, 429 and 503 answers without a Retry-After header

    async def aclose(self) -> None:
        for server in self.servers:
            await server.aclose()

    def pick(self) -> httpx.AsyncClient:
        """A server for the next request: a load balancer without affinity (random)."""
        return self.servers[self._random.randrange(len(self.servers))]

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def conversation(self) -> str:
        """Start a conversation (retried like messages); return its id."""
        deadline = time.monotonic() + self.give_up_s
        while True:
            try:
                response = await self.pick().post("/api/v1/conversations", headers={"X-Bot-Key": PUBLIC_KEY})
                if response.status_code == 201:
                    body = response.json()
                    self.tokens[body["id"]] = body["token"]
                    return str(body["id"])
                self.statuses[response.status_code] += 1
            except httpx.TransportError:
                self.statuses["transport"] += 1
            if time.monotonic() > deadline:
                raise RuntimeError("could not start a conversation")
            await asyncio.sleep(0.5)

    async def send(self, conversation_id: str, text: str, *, client_message_id: str | None = None,
                   stream: bool = False, server: int | None = None) -> Sent:
        """Send until a 200 or a non-retryable status, or ``give_up_s``; the same id every time.

        Each attempt goes to a random server (or always to ``servers[server]``)."""
        sent = Sent(conversation_id, client_message_id or uuid.uuid4().hex, text, started=time.monotonic())
        self.sent.append(sent)
        headers = {"Authorization": f"Bearer {self.tokens[conversation_id]}"}
        if stream:
            headers["Accept"] = "text/event-stream"
        path = f"/api/v1/conversations/{conversation_id}/messages"
        body = {"text": text, "client_message_id": sent.client_message_id}
        deadline = sent.started + self.give_up_s
        while time.monotonic() < deadline:
            attempt = time.monotonic()
            wait = 0.3
            try:
                http = self.servers[server] if server is not None else self.pick()
                response = await http.post(path, json=body, headers=headers)
                status: int | str = response.status_code
                if status == 200:
                    sent.reply = _sse_done(response.text) if stream else response.json()
                    if sent.reply is None:  # an SSE stream that ended with an `error` event: retry
                        status = "sse-error"
                elif status in RETRY_STATUSES:
                    if status in (409, 429, 503) and "retry-after" not in response.headers:
                        self.missing_retry_after += 1
                    wait = min(float(response.headers.get("retry-after") or 0.5), 2.0)
            except httpx.TransportError as exc:  # a killed worker, a dropped connection
                status = f"transport:{type(exc).__name__}"
            sent.statuses.append(status)
            sent.latencies.append(time.monotonic() - attempt)
            self.statuses[status if isinstance(status, int) or status == "sse-error" else "transport"] += 1
            if sent.reply is not None or (isinstance(status, int) and status not in RETRY_STATUSES):
                return sent
            await asyncio.sleep(wait)
        return sent

    async def metrics(self) -> str:
        """The ``/metrics`` pages of every server, one after the other (see :func:`metric`).

        With ``--workers N`` one page holds all of that server's workers' sums."""
        return "\n".join([(await server.get("/metrics")).text for server in self.servers])


@dataclass
class Audit:
    """What the database says about the messages a test sent (see :func:`audit`)."""

    sent: int = 0
    acknowledged: int = 0
    lost: list[str] = field(default_factory=list)  # acknowledged, or sent, but not in the database
    duplicated: list[str] = field(default_factory=list)  # a client message id stored twice
    unanswered: list[str] = field(default_factory=list)  # a stored user message with no reply
    double_answered: list[str] = field(default_factory=list)  # a user message with two replies
    reply_before_message: list[str] = field(default_factory=list)  # a reply numbered before its message
    wrong_reply: list[str] = field(default_factory=list)  # the client was told a reply the database lacks
    send_order_broken: list[str] = field(default_factory=list)  # sequential sends stored out of order
    reordered: list[str] = field(default_factory=list)  # conversations whose replies skip an earlier message

    def problems(self) -> dict[str, int]:
        """Counts of every kind of violation (all should be 0)."""
        return {name: len(getattr(self, name)) for name in (
            "lost", "duplicated", "unanswered", "double_answered", "reply_before_message", "wrong_reply",
            "send_order_broken", "reordered")}


async def audit(database_url: str, sent: list[Sent], *, sequential: set[str] = frozenset()) -> Audit:  # type: ignore[assignment]
    """Check every sent message against the database.

    Every message a client sent (acknowledged or not: a retry may have finished it) is
    stored exactly once and answered exactly once, by a reply numbered after it; every
    reply a client was given is the stored one. In ``sequential`` conversations (one
    message at a time) user messages are stored in the order they were sent. In every
    conversation replies follow the recorded order of the messages they answer, also for
    two messages that arrived at the same instant on two workers (``reordered``).
    """
    ids = sorted({s.conversation_id for s in sent})
    rows = await pg_execute(
        database_url,
        "SELECT id, conversation_id, seq, role, channel_message_id, reply_to FROM messages "
        "WHERE conversation_id = ANY($1::text[]) ORDER BY conversation_id, seq", ids)
    result = Audit(sent=len(sent), acknowledged=sum(1 for s in sent if s.acknowledged))
    users: dict[tuple[str, str], list[Any]] = {}
    replies: dict[int, list[Any]] = {}
    by_id = {r["id"]: r for r in rows}
    for row in rows:
        if row["role"] == "user" and row["channel_message_id"]:
            users.setdefault((row["conversation_id"], row["channel_message_id"]), []).append(row)
        if row["role"] == "assistant" and row["reply_to"] is not None:
            replies.setdefault(row["reply_to"], []).append(row)
    for item in sent:
        found = users.get((item.conversation_id, item.client_message_id), [])
        key = f"{item.conversation_id}/{item.client_message_id}"
        if not found:
            result.lost.append(key)
            continue
        if len(found) > 1:
            result.duplicated.append(key)
        user = found[0]
        answers = replies.get(user["id"], [])
        if not answers:
            result.unanswered.append(key)
        elif len(answers) > 1:
            result.double_answered.append(key)
        if any(a["seq"] <= user["seq"] for a in answers):
            result.reply_before_message.append(key)
        if item.reply is not None:
            told = by_id.get(item.reply.get("message_id"))
            if told is None or told["reply_to"] != user["id"]:
                result.wrong_reply.append(key)
    for conversation_id in sequential:
        order = [s.client_message_id for s in sent if s.conversation_id == conversation_id]
        stored = [r["channel_message_id"] for r in rows
                  if r["conversation_id"] == conversation_id and r["role"] == "user"]
        if stored != order:
            result.send_order_broken.append(conversation_id)
    for conversation_id in ids:
        answered = [by_id[r["reply_to"]]["seq"] for r in rows if r["conversation_id"] == conversation_id
                    and r["role"] == "assistant" and r["reply_to"] in by_id]
        if answered != sorted(answered):
            result.reordered.append(conversation_id)
    return result


def _sse_done(payload: str) -> dict[str, Any] | None:
    event = None
    for line in payload.replace("\r\n", "\n").split("\n"):
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:") and event == "done":
            return dict(json.loads(line[5:]))
    return None


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples ``name{labels...}`` in a Prometheus text page."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


__all__ = [
    "PUBLIC_KEY", "QUESTIONS", "Audit", "Client", "Faults", "FaultyStub", "Proc", "Sent", "audit", "free_port",
    "log_records", "make_bot_dir", "metric", "pg_execute", "scratch_database", "size", "start_botkit", "start_chroma",
    "wait_botkit", "wait_http", "wait_log", "wait_workers_ready", "worker_pids",
]
