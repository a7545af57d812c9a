"""Run a test set through the real bot, in an isolated conversation store.

Each case gets a fresh conversation: its ``history`` messages are sent first as user
turns, then its ``question``. The bot is built from the bot's own configuration with
``database_url`` pointing to a SQLite file in a temporary folder, so an evaluation never
writes to production conversations; the knowledge index is the bot's own, only read.

Retrieval figures come from the retriever itself (not from the reply's citations): the
history-aware query :func:`knowledge.query.contextualize` builds, as the dialogue manager
does, ranked by ``bot.knowledge.retriever.retrieve(query, k=5)``.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botkit.config import BotConfig
from botkit.errors import ConfigError
from botkit.evaluation.metrics import RETRIEVAL_K, CaseResult, quotes_instructions, summarize
from botkit.evaluation.testset import TestCase

EVAL_CHANNEL = "eval"
ResultCallback = Callable[[CaseResult], None]


@dataclass
class EvalRun:
    """The results of one run and what it ran against."""

    results: list[CaseResult]
    info: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The ``--json`` document (see :mod:`botkit.evaluation.metrics`)."""
        return summarize(self.results, info=self.info)


def eval_config(
    config: BotConfig,
    workdir: str | Path,
    *,
    backend: str | None = None,
    escalation_classifier: str | None = None,
    without_classifier: bool = False,
) -> BotConfig:
    """The bot's config with its store moved to ``workdir/eval.db``.

    ``backend`` replaces the fallback chain with that one backend; ``escalation_classifier``
    sets (``without_classifier`` clears) ``escalation.classifier``.
    """
    update: dict[str, Any] = {"database_url": f"sqlite:///{Path(workdir).resolve() / 'eval.db'}"}
    if backend:
        update["backends"] = [backend]
    if escalation_classifier or without_classifier:
        classifier = None if without_classifier else str(Path(escalation_classifier or "").expanduser().resolve())
        update["escalation"] = config.escalation.model_copy(update={"classifier": classifier})
    return config.model_copy(update=update)


async def run_case(bot: Any, case: TestCase, *, timeout: float) -> CaseResult:
    """Run one case in a fresh conversation; errors are recorded, never raised."""
    from knowledge.query import contextualize

    result = CaseResult(case=case)
    conversation = f"eval-{uuid.uuid4().hex}"

    async def turns() -> Any:
        for earlier in case.history:
            await bot.reply(conversation, earlier, channel=EVAL_CHANNEL)
        return await bot.reply(conversation, case.question, channel=EVAL_CHANNEL)

    try:
        reply = await asyncio.wait_for(turns(), timeout)
    except asyncio.TimeoutError:
        result.error = f"timed out after {timeout:.0f} s"
    except Exception as exc:  # noqa: BLE001 - a failing case is reported, the run goes on
        result.error = f"{type(exc).__name__}: {exc}"
    else:
        result.answer = reply.text or ""
        result.citations = [c.source for c in reply.citations]
        result.abstained = bool(reply.abstained)
        result.handoff = bool(reply.handoff)
        result.backend = reply.backend
        result.latency_ms = float(reply.latency_ms)
        result.prompt_tokens = int(reply.prompt_tokens or 0)
        result.completion_tokens = int(reply.completion_tokens or 0)
        result.leaked = quotes_instructions(result.answer, persona=bot.config.persona)
    try:
        query = contextualize(case.question, case.history)
        passages = await asyncio.to_thread(bot.knowledge.retriever.retrieve, query, k=RETRIEVAL_K, message=case.question)
        result.retrieved = [p.source for p in passages]
    except Exception as exc:  # noqa: BLE001 - reported with the case
        message = f"retrieval: {type(exc).__name__}: {exc}"
        result.error = f"{result.error}; {message}" if result.error else message
    return result


async def run_cases(
    bot: Any, cases: Sequence[TestCase], *, concurrency: int = 4, on_result: ResultCallback | None = None
) -> list[CaseResult]:
    """Run ``cases`` with at most ``concurrency`` at a time; results in the cases' order."""
    if concurrency < 1:
        raise ConfigError(f"--concurrency must be at least 1 (got {concurrency})")
    limits = bot.config.limits
    semaphore = asyncio.Semaphore(concurrency)

    async def one(case: TestCase) -> CaseResult:
        async with semaphore:
            timeout = limits.turn_timeout_s * (len(case.history) + 1) + limits.lock_timeout_s
            result = await run_case(bot, case, timeout=timeout)
        if on_result is not None:
            on_result(result)
        return result

    return list(await asyncio.gather(*(one(case) for case in cases)))


async def evaluate(
    config: BotConfig,
    cases: Sequence[TestCase],
    *,
    backend: str | None = None,
    backends: Sequence[Any] | None = None,
    escalation_classifier: str | None = None,
    without_classifier: bool = False,
    concurrency: int = 4,
    on_result: ResultCallback | None = None,
    info: dict[str, Any] | None = None,
) -> EvalRun:
    """Evaluate the bot of ``config`` on ``cases`` (see the module docstring).

    ``backends`` (backend instances, e.g. a ``ScriptedBackend`` in tests) replace the
    configured chain; ``backend`` names one backend instead. Raises :class:`ConfigError`
    when the knowledge base has not been ingested (run ``botkit ingest`` first).
    """
    from botkit.bot import Bot

    started = time.time()
    with tempfile.TemporaryDirectory(prefix="botkit-eval-") as workdir:
        cfg = eval_config(
            config, workdir, backend=backend,
            escalation_classifier=escalation_classifier, without_classifier=without_classifier,
        )
        bot = Bot(cfg, backends=backends)
        warnings: list[str] = []
        kb = bot.knowledge
        if await asyncio.to_thread(kb.is_empty):
            raise ConfigError(
                f"the knowledge base of {config.root} is empty",
                hint=f"index it first with `botkit ingest --bot {config.root}`",
            )
        if await asyncio.to_thread(kb.is_stale):
            warnings.append("the knowledge base is older than its sources; run `botkit ingest` to refresh it")
        try:
            async with bot:
                results = await run_cases(bot, cases, concurrency=concurrency, on_result=on_result)
        finally:
            kb.close()
    run_info: dict[str, Any] = {
        "bot": cfg.name,
        "bot_dir": str(config.root),
        "backends": [str(getattr(b, "spec", b)) for b in backends] if backends is not None else list(cfg.backends),
        "escalation_classifier": cfg.escalation.classifier,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration_s": round(time.time() - started, 2),
        "warnings": warnings,
    }
    run_info.update(info or {})
    return EvalRun(results=results, info=run_info)


__all__ = ["EVAL_CHANNEL", "EvalRun", "eval_config", "evaluate", "run_case", "run_cases"]
