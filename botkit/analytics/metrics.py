"""Support metrics from the conversation store, per day and per channel.

A conversation counts on the day (in the report's time zone) it started, with everything
that happened in it. Definitions:

- *turns*: user messages;
- *handed off*: the bot handed the conversation to a person at some point
  (``handoff_at`` in its metadata) or an agent wrote in it;
- *deflection rate*: conversations that ended without a person / conversations;
- *abstention rate*: bot replies with no supporting source / bot replies;
- *CSAT*: thumbs up / (thumbs up + thumbs down);
- latency p50/p95, tokens and estimated cost (``console.prices``) per backend;
- sources by citations, and the knowledge base's sources never cited.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, cast

from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncEngine

from botkit._tables import reading
from botkit.config import TokenPrice
from botkit.store.models import ConversationRow, FeedbackRow, MessageRow

_C = cast(Table, ConversationRow.__table__).c
_M = cast(Table, MessageRow.__table__).c
_F = cast(Table, FeedbackRow.__table__).c


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


@dataclass
class Bucket:
    """Counts for one day, one channel, or everything."""

    conversations: int = 0
    turns: int = 0
    handoffs: int = 0
    replies: int = 0
    abstentions: int = 0
    thumbs_up: int = 0
    thumbs_down: int = 0

    @property
    def deflection_rate(self) -> float | None:
        """Share of conversations that ended without a person."""
        return _rate(self.conversations - self.handoffs, self.conversations)

    @property
    def handoff_rate(self) -> float | None:
        """Share of conversations handed to a person."""
        return _rate(self.handoffs, self.conversations)

    @property
    def abstention_rate(self) -> float | None:
        """Share of bot replies without a supporting source."""
        return _rate(self.abstentions, self.replies)

    @property
    def csat(self) -> float | None:
        """Thumbs up among all thumbs."""
        return _rate(self.thumbs_up, self.thumbs_up + self.thumbs_down)

    def to_dict(self) -> dict[str, Any]:
        """Counts and rates as JSON."""
        return {**asdict(self), "deflection_rate": self.deflection_rate, "handoff_rate": self.handoff_rate,
                "abstention_rate": self.abstention_rate, "csat": self.csat}


@dataclass
class BackendStats:
    """Replies, latency, tokens and cost of one backend."""

    backend: str
    replies: int
    p50_ms: float | None
    p95_ms: float | None
    prompt_tokens: int
    completion_tokens: int
    cost: float


@dataclass
class Report:
    """Everything ``botkit report`` and the analytics page show (except gaps)."""

    bot: str | None
    since: date
    until: date
    timezone: str
    total: Bucket
    days: dict[str, Bucket]
    channels: dict[str, Bucket]
    day_channels: dict[str, dict[str, Bucket]]
    backends: list[BackendStats]
    cited: list[tuple[str, str, int]] = field(default_factory=list)
    never_cited: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON (``botkit report --json``)."""
        return {
            "bot": self.bot, "since": self.since.isoformat(), "until": self.until.isoformat(), "timezone": self.timezone,
            "total": self.total.to_dict(),
            "days": [{"date": day, **bucket.to_dict(),
                      "channels": {ch: b.to_dict() for ch, b in self.day_channels.get(day, {}).items()}}
                     for day, bucket in self.days.items()],
            "channels": {name: bucket.to_dict() for name, bucket in self.channels.items()},
            "backends": [asdict(b) for b in self.backends],
            "cited_sources": [{"source": s, "title": t, "citations": n} for s, t, n in self.cited],
            "never_cited": list(self.never_cited),
        }


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100) of ``values``; ``None`` when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return float(ordered[rank - 1])


def price_of(backend: str, prices: Mapping[str, TokenPrice]) -> TokenPrice | None:
    """The price entry of a backend string (``openai:gpt-4o-mini``) or its model name."""
    return prices.get(backend) or prices.get(backend.split(":", 1)[-1])


def origin_of(source: str) -> str:
    """The file a citation's source comes from (``faq.csv#refund`` → ``faq.csv``)."""
    return source.split("#", 1)[0]


def summarize(
    conversations: Iterable[Mapping[str, Any]], messages: Iterable[Mapping[str, Any]],
    feedback: Iterable[Mapping[str, Any]], *, since: date, until: date, tz: Any = timezone.utc, tz_name: str = "UTC",
    bot: str | None = None, prices: Mapping[str, TokenPrice] | None = None, known_sources: Iterable[str] = (),
) -> Report:
    """Compute a :class:`Report` from plain rows (the pure half of :func:`compute_report`)."""
    conv_day: dict[str, tuple[str, str]] = {}
    handed: set[str] = set()
    for c in conversations:
        created = c["created_at"] if c["created_at"].tzinfo else c["created_at"].replace(tzinfo=timezone.utc)
        conv_day[c["id"]] = (created.astimezone(tz).date().isoformat(), c["channel"])
        if (c.get("metadata") or {}).get("handoff_at") or c.get("state") == "handoff":
            handed.add(c["id"])
    msgs = [m for m in messages if m["conversation_id"] in conv_day]
    handed |= {m["conversation_id"] for m in msgs if m["role"] == "agent"}
    active = {m["conversation_id"] for m in msgs if m["role"] == "user"}
    days = {(since + timedelta(days=i)).isoformat(): Bucket() for i in range((until - since).days + 1)}
    channels: dict[str, Bucket] = {}
    day_channels: dict[str, dict[str, Bucket]] = {}
    total = Bucket()

    def buckets(conversation_id: str) -> list[Bucket]:
        day, channel = conv_day[conversation_id]
        per_day = day_channels.setdefault(day, {})
        return [total, days.setdefault(day, Bucket()), channels.setdefault(channel, Bucket()),
                per_day.setdefault(channel, Bucket())]

    for cid in active:
        for b in buckets(cid):
            b.conversations += 1
            b.handoffs += cid in handed
    latencies: dict[str, list[float]] = {}
    tokens: dict[str, list[int]] = {}
    cited: Counter[str] = Counter()
    titles: dict[str, str] = {}
    for m in msgs:
        if m["role"] == "user":
            for b in buckets(m["conversation_id"]):
                b.turns += 1
        elif m["role"] == "assistant":
            for b in buckets(m["conversation_id"]):
                b.replies += 1
                b.abstentions += bool(m["abstained"])
            name = m.get("backend")
            if name:
                if m.get("latency_ms") is not None:
                    latencies.setdefault(name, []).append(float(m["latency_ms"]))
                counts = tokens.setdefault(name, [0, 0, 0])
                counts[0] += 1
                counts[1] += int(m.get("prompt_tokens") or 0)
                counts[2] += int(m.get("completion_tokens") or 0)
            for citation in m.get("citations") or []:
                source = str(citation.get("source") or "")
                if source:
                    cited[source] += 1
                    titles.setdefault(source, str(citation.get("title") or source))
    for f in feedback:
        if f["conversation_id"] in conv_day:
            for b in buckets(f["conversation_id"]):
                if f["rating"] > 0:
                    b.thumbs_up += 1
                else:
                    b.thumbs_down += 1
    backends = []
    for name in sorted(set(latencies) | set(tokens)):
        replies, prompt, completion = tokens.get(name, [0, 0, 0])
        price = price_of(name, prices or {})
        cost = (prompt * price.prompt + completion * price.completion) / 1000 if price else 0.0
        values = latencies.get(name, [])
        backends.append(BackendStats(name, replies, percentile(values, 50), percentile(values, 95), prompt, completion,
                                     round(cost, 6)))
    cited_origins = {origin_of(s) for s in cited}
    never = sorted(s for s in known_sources if s not in cited_origins and s not in cited)
    return Report(bot=bot, since=since, until=until, timezone=tz_name, total=total, days=dict(sorted(days.items())),
                  channels=dict(sorted(channels.items())), day_channels=day_channels, backends=backends,
                  cited=[(s, titles[s], n) for s, n in cited.most_common()], never_cited=never)


async def compute_report(
    engine: AsyncEngine, *, bot: str | None, since: date, until: date | None = None, tz_name: str = "UTC",
    prices: Mapping[str, TokenPrice] | None = None, known_sources: Iterable[str] = (),
) -> Report:
    """The report for conversations of ``bot`` (all bots when ``None``) started from ``since``
    to ``until`` (inclusive, default today) in time zone ``tz_name``."""
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(tz_name)
    until = until or datetime.now(tz).date()
    start = datetime.combine(since, time(0), tzinfo=tz).astimezone(timezone.utc)
    end = datetime.combine(until + timedelta(days=1), time(0), tzinfo=tz).astimezone(timezone.utc)
    chosen = select(_C.id).where(_C.created_at >= start, _C.created_at < end)
    if bot is not None:
        chosen = chosen.where(_C.bot == bot)
    conv_q = select(_C.id, _C.channel, _C.created_at, _C.state, _C["metadata"]).where(_C.id.in_(chosen))
    msg_q = select(_M.conversation_id, _M.role, _M.abstained, _M.backend, _M.latency_ms, _M.prompt_tokens,
                   _M.completion_tokens, _M.citations).where(_M.conversation_id.in_(chosen))
    fb_q = select(_F.conversation_id, _F.rating).where(_F.conversation_id.in_(chosen))
    async with reading(engine, "read analytics") as conn:
        conversations = [dict(r._mapping) for r in (await conn.execute(conv_q)).all()]
        messages = [dict(r._mapping) for r in (await conn.execute(msg_q)).all()]
        feedback = [dict(r._mapping) for r in (await conn.execute(fb_q)).all()]
    return summarize(conversations, messages, feedback, since=since, until=until, tz=tz, tz_name=tz_name, bot=bot,
                     prices=prices, known_sources=known_sources)


__all__ = ["BackendStats", "Bucket", "Report", "compute_report", "percentile", "price_of", "summarize"]
