"""Web connector benchmark: throughput, latency and streaming overhead on loopback.

    .venv/bin/python benchmarks/bench_web.py [--duration 12] [--clients 32] [--no-two-workers]

1. Chat turns/s and p50/p99 latency with ``--clients`` concurrent clients against
   ``botkit serve`` (extractive backend, real embeddings): one worker (SQLite + embedded
   Chroma) and two workers (PostgreSQL + a Chroma server; skipped when PostgreSQL at
   ``$BOTKIT_BENCH_POSTGRES_URL`` / ``$BOTKIT_TEST_POSTGRES_URL`` or ``chroma`` is missing).
2. In the same run, a bare FastAPI app doing the same store writes and retrieval (no
   botkit web layer, no dialogue manager): botkit's throughput should be >= 0.7x of it.
3. Time to first streamed token added by botkit over the backend's own first token:
   a ScriptedBackend with a fixed ``first_token_delay``, 16 concurrent SSE streams;
   target p95 <= 50 ms.

Every server runs in its own process (the load generator does not share its CPU time
slices). Prints a table and writes JSON to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "faq-agent"
RESULTS = ROOT / "benchmarks" / "results"
PUBLIC_KEY = "pk_bench"
FIRST_TOKEN_DELAY_S = 0.2
TURNS_PER_CONVERSATION = 4
ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False",
       "BOTKIT_WEB__RATE_LIMIT_PER_MINUTE": "0", "BOTKIT_WEB__CONVERSATION_RATE_LIMIT_PER_MINUTE": "0",
       "TOKENIZERS_PARALLELISM": "false"}


# -- servers (run in child processes) ------------------------------------------------------

def serve_bare(bot_dir: str, port: int) -> None:
    """A bare FastAPI app: the same store writes and retrieval as a botkit turn, nothing else."""
    import uvicorn
    from fastapi import FastAPI
    from pydantic import BaseModel

    from botkit.config import load_config
    from botkit.store import SQLConversationStore
    from knowledge.index import KnowledgeBase

    config = load_config(bot_dir)
    store = SQLConversationStore.from_config(config)
    kb = KnowledgeBase.open(config.knowledge, root=config.root, data_dir=config.data_path,
                            chroma_path=config.chroma_path)
    app = FastAPI()

    class Body(BaseModel):
        text: str

    @app.on_event("startup")
    async def _start() -> None:
        await store.open()
        await asyncio.to_thread(kb.retriever.retrieve, "warm up")

    @app.get("/readyz")
    async def _ready() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/api/v1/conversations", status_code=201)
    async def _create() -> dict[str, str]:
        conversation = await store.create_conversation(bot=config.name, channel="web")
        return {"id": conversation.id, "token": "-"}

    @app.post("/api/v1/conversations/{conversation_id}/messages")
    async def _message(conversation_id: str, body: Body) -> dict[str, Any]:
        user, _ = await store.add_user_message(conversation_id, body.text)
        passages = await asyncio.to_thread(kb.retriever.retrieve, body.text, k=config.knowledge.top_k)
        text = passages[0].text[:400] if passages else "I don't know."
        reply = await store.add_bot_message(conversation_id, text, reply_to=user.id, backend="bare")
        return {"text": text, "message_id": reply.id, "citations": [p.source for p in passages]}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def serve_scripted(bot_dir: str, port: int) -> None:
    """botkit's app over a ScriptedBackend whose first token always takes FIRST_TOKEN_DELAY_S."""
    import uvicorn

    from botkit.backends.scripted import ScriptedBackend
    from botkit.bot import Bot
    from connectors.web.app import create_app

    backend = ScriptedBackend()
    for _ in range(20_000):
        backend.enqueue("Reset it from the sign-in page [1]. The link is valid for 60 minutes.",
                        first_token_delay=FIRST_TOKEN_DELAY_S, chunks=["Reset it ", "from the sign-in page [1]. ",
                                                                       "The link is valid for 60 minutes."])
    uvicorn.run(create_app(Bot.from_dir(bot_dir, backends=[backend])), host="127.0.0.1", port=port,
                log_level="warning")


# -- orchestration -----------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_bot(root: Path, extra_env: dict[str, str] | None = None) -> Path:
    shutil.copytree(EXAMPLE / "knowledge", root / "knowledge")
    (root / "bot.yaml").write_text(
        f"name: bench\nbackends: [\"extractive\"]\nweb:\n  public_key: {PUBLIC_KEY}\n", encoding="utf-8")
    return root


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    return subprocess.Popen(cmd, env={**os.environ, **ENV, **env}, stdout=handle, stderr=subprocess.STDOUT,
                            cwd=ROOT, start_new_session=True)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


async def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited ({process.returncode}):\n{log.read_text()[-3000:]}")
            try:
                if (await http.get(url + "/readyz", timeout=2)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.25)
    raise RuntimeError(f"server at {url} not ready:\n{log.read_text()[-3000:]}")


def questions() -> list[str]:
    rows = [json.loads(line) for line in (EXAMPLE / "questions.jsonl").read_text().splitlines() if line.strip()]
    return [r["question"] for r in rows if r.get("kind") in ("direct", "paraphrase")] or ["How do I reset my password?"]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


async def chat_load(url: str, clients: int, duration: float, warmup: float) -> dict[str, Any]:
    """``clients`` loops of (create conversation, TURNS_PER_CONVERSATION JSON turns)."""
    qs = questions()
    latencies: list[float] = []
    errors = 0
    t0 = time.monotonic()
    measure_from, stop_at = t0 + warmup, t0 + warmup + duration
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as http:

        async def client(index: int) -> None:
            nonlocal errors
            turn = index
            while time.monotonic() < stop_at:
                created = await http.post("/api/v1/conversations", headers={"X-Bot-Key": PUBLIC_KEY})
                created.raise_for_status()
                conversation = created.json()
                headers = {"Authorization": f"Bearer {conversation['token']}"}
                for _ in range(TURNS_PER_CONVERSATION):
                    started = time.monotonic()
                    if started >= stop_at:
                        return
                    response = await http.post(f"/api/v1/conversations/{conversation['id']}/messages",
                                               json={"text": qs[turn % len(qs)]}, headers=headers)
                    turn += clients
                    if started >= measure_from:
                        if response.status_code == 200:
                            latencies.append(time.monotonic() - started)
                        else:
                            errors += 1

        await asyncio.gather(*(client(i) for i in range(clients)))
    elapsed = max(1e-9, min(time.monotonic(), stop_at + 60) - measure_from)
    return {"turns": len(latencies), "errors": errors, "seconds": round(elapsed, 2),
            "turns_per_s": round(len(latencies) / elapsed, 2),
            "p50_ms": round(percentile(latencies, 50) * 1000, 1), "p99_ms": round(percentile(latencies, 99) * 1000, 1)}


async def ttft_load(url: str, streams: int, rounds: int) -> dict[str, Any]:
    """``streams`` concurrent SSE turns, ``rounds`` times; overhead = first delta - backend delay."""
    overheads: list[float] = []
    async with httpx.AsyncClient(base_url=url, timeout=60,
                                 limits=httpx.Limits(max_connections=streams * 2)) as http:

        async def one() -> None:
            created = (await http.post("/api/v1/conversations", headers={"X-Bot-Key": PUBLIC_KEY})).json()
            headers = {"Authorization": f"Bearer {created['token']}", "Accept": "text/event-stream"}
            for index in range(rounds + 1):
                started = time.monotonic()
                first = None
                async with http.stream("POST", f"/api/v1/conversations/{created['id']}/messages",
                                       json={"text": "How do I reset my password?"}, headers=headers) as response:
                    async for line in response.aiter_lines():
                        if first is None and line.startswith("event: delta"):
                            first = time.monotonic() - started
                if index and first is not None:  # the first round warms up
                    overheads.append(first - FIRST_TOKEN_DELAY_S)

        await asyncio.gather(*(one() for _ in range(streams)))
    return {"streams": streams, "samples": len(overheads), "backend_first_token_ms": FIRST_TOKEN_DELAY_S * 1000,
            "overhead_p50_ms": round(percentile(overheads, 50) * 1000, 1),
            "overhead_p95_ms": round(percentile(overheads, 95) * 1000, 1)}


async def run_server(cmd: list[str], env: dict[str, str], port: int, log: Path, body: Any) -> dict[str, Any]:
    process = start(cmd, env, log)
    try:
        await wait_ready(f"http://127.0.0.1:{port}", process, log)
        return dict(await body(f"http://127.0.0.1:{port}"))
    finally:
        stop(process)


def postgres_url() -> str | None:
    url = os.environ.get("BOTKIT_BENCH_POSTGRES_URL") or os.environ.get("BOTKIT_TEST_POSTGRES_URL") \
        or "postgresql://postgres@127.0.0.1:5432/postgres"
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        return None
    return url


async def pg_admin(url: str, statement: str) -> None:
    import asyncpg
    from sqlalchemy.engine import make_url

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn, timeout=5)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def two_workers(tmp: Path, args: argparse.Namespace, botkit_cmd: list[str]) -> dict[str, Any]:
    from sqlalchemy.engine import make_url

    base = postgres_url()
    chroma = shutil.which("chroma") or str(Path(sys.executable).with_name("chroma"))
    if base is None or not Path(chroma).exists():
        return {"skipped": "needs PostgreSQL (asyncpg) and the chroma CLI"}
    database = f"botkit_bench_{uuid.uuid4().hex[:8]}"
    try:
        await pg_admin(base, f'CREATE DATABASE "{database}"')
    except (OSError, Exception) as exc:  # noqa: BLE001 - report why the scenario was skipped
        return {"skipped": f"PostgreSQL at {make_url(base).render_as_string()} unavailable: {exc}"}
    chroma_port = free_port()
    chroma_log = tmp / "chroma.log"
    chroma_proc = start([chroma, "run", "--path", str(tmp / "chroma-server"), "--host", "127.0.0.1",
                         "--port", str(chroma_port)], {}, chroma_log)
    try:
        bot = make_bot(tmp / "bot-pg")
        env = {"BOTKIT_DATABASE_URL": make_url(base).set(database=database).render_as_string(hide_password=False),
               "BOTKIT_KNOWLEDGE__CHROMA_URL": f"http://127.0.0.1:{chroma_port}"}
        async with httpx.AsyncClient() as http:
            for _ in range(120):
                try:
                    await http.get(f"http://127.0.0.1:{chroma_port}/api/v2/heartbeat", timeout=1)
                    break
                except httpx.HTTPError:
                    await asyncio.sleep(0.5)
        port = free_port()
        return await run_server(
            botkit_cmd + ["serve", "--bot", str(bot), "--port", str(port), "--workers", "2", "--log-level", "warning"],
            env, port, tmp / "serve-2.log",
            lambda url: chat_load(url, args.clients, args.duration, args.warmup))
    finally:
        stop(chroma_proc)
        await pg_admin(base, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=12.0, help="Measured seconds per chat scenario.")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=6, help="SSE turns per stream client (after one warm-up).")
    parser.add_argument("--no-two-workers", action="store_true")
    args = parser.parse_args()
    botkit_cmd = [sys.executable, "-m", "botkit.cli"]
    me = [sys.executable, str(Path(__file__).resolve())]
    started = time.monotonic()
    results: dict[str, Any] = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                                           "platform": platform.platform()}, "args": vars(args)}
    with tempfile.TemporaryDirectory(prefix="bench-web-") as name:
        tmp = Path(name)
        bot = make_bot(tmp / "bot")
        port = free_port()
        results["botkit_1_worker"] = await run_server(
            botkit_cmd + ["serve", "--bot", str(bot), "--port", str(port), "--log-level", "warning"], {}, port,
            tmp / "serve-1.log", lambda url: chat_load(url, args.clients, args.duration, args.warmup))
        port = free_port()
        results["bare_fastapi"] = await run_server(
            me + ["--serve-bare", str(bot), str(port)], {}, port, tmp / "bare.log",
            lambda url: chat_load(url, args.clients, args.duration, args.warmup))
        port = free_port()
        results["ttft"] = await run_server(
            me + ["--serve-scripted", str(bot), str(port)], {}, port, tmp / "scripted.log",
            lambda url: ttft_load(url, args.streams, args.rounds))
        if not args.no_two_workers:
            results["botkit_2_workers"] = await two_workers(tmp, args, botkit_cmd)
    ratio = results["botkit_1_worker"]["turns_per_s"] / max(1e-9, results["bare_fastapi"]["turns_per_s"])
    results["checks"] = {"throughput_ratio_vs_bare": round(ratio, 3), "throughput_ok": ratio >= 0.7,
                         "ttft_overhead_ok": results["ttft"]["overhead_p95_ms"] <= 50}
    results["wall_s"] = round(time.monotonic() - started, 1)
    report(results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"bench_web-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {out.relative_to(ROOT)}")


def report(results: dict[str, Any]) -> None:
    print(f"\n{'scenario':<22}{'turns/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'turns':>7}{'errors':>8}")
    for key in ("botkit_1_worker", "botkit_2_workers", "bare_fastapi"):
        row = results.get(key)
        if row is None:
            continue
        if "skipped" in row:
            print(f"{key:<22}  skipped: {row['skipped']}")
            continue
        print(f"{key:<22}{row['turns_per_s']:>9}{row['p50_ms']:>9}{row['p99_ms']:>9}{row['turns']:>7}{row['errors']:>8}")
    ttft = results["ttft"]
    checks = results["checks"]
    print(f"\nbotkit / bare throughput: {checks['throughput_ratio_vs_bare']}x (target >= 0.7: "
          f"{'ok' if checks['throughput_ok'] else 'MISSED'})")
    print(f"SSE first-token overhead over a {ttft['backend_first_token_ms']:.0f} ms backend, {ttft['streams']} streams: "
          f"p50 {ttft['overhead_p50_ms']} ms, p95 {ttft['overhead_p95_ms']} ms (target p95 <= 50: "
          f"{'ok' if checks['ttft_overhead_ok'] else 'MISSED'})")
    print(f"wall time {results['wall_s']} s")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve-bare":
        serve_bare(sys.argv[2], int(sys.argv[3]))
    elif len(sys.argv) == 4 and sys.argv[1] == "--serve-scripted":
        serve_scripted(sys.argv[2], int(sys.argv[3]))
    else:
        asyncio.run(main())
