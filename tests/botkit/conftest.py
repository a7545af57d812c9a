"""Fixtures for dialogue tests: a small bot with a real index, built once per session."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from botkit.backends.base import Backend
from botkit.bot import Bot
from botkit.config import load_config

KNOWLEDGE = {
    "billing/plans.md": """# Plans and pricing

## Pro plan

The Pro plan costs $12 per user per month when billed monthly.

## Annual billing

On annual billing the Pro plan costs $120 per user per year, two months free.

## Business plan

The Business plan costs $24 per user per month and adds SSO and the audit log.
""",
    "account/password.md": """# Resetting your password

## From the login page

Click "Forgot password?" on the login page and enter your email. The reset link is valid
for 60 minutes. Your new password needs at least 10 characters.

## Locked accounts

After 5 failed sign-in attempts the account is locked for 15 minutes.
""",
    "faq.csv": 'id,question,answer\n'
    'export,How do I export my data?,"Go to Settings > Data > Export and choose CSV or JSON; the file is emailed within 10 minutes."\n'
    'refund,Can I get a refund?,"Annual plans can be refunded within 30 days of purchase from Settings > Billing."\n',
}


@pytest.fixture(scope="session")
def indexed_bot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bot directory whose knowledge base is ingested (real embeddings, real Chroma)."""
    root = tmp_path_factory.mktemp("bot")
    for name, text in KNOWLEDGE.items():
        path = root / "knowledge" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    (root / "bot.yaml").write_text("name: Test Bot\nescalation:\n  max_abstentions: 2\n", encoding="utf-8")
    from knowledge.index import KnowledgeBase

    config = load_config(root, environ={})
    kb = KnowledgeBase.open(config.knowledge, config.root, config.data_path, chroma_path=config.chroma_path)
    try:
        report = kb.ingest()
        assert not report.failed, report.failed
    finally:
        kb.close()
    return root


@pytest.fixture
def make_bot(indexed_bot_dir: Path, tmp_path: Path, store_url: str) -> Callable[..., Bot]:
    """Build bots over a copy of the indexed bot, on the test's database (SQLite or PostgreSQL)."""
    bot_dir = tmp_path / "bot"
    shutil.copytree(indexed_bot_dir, bot_dir)
    bots: list[Bot] = []

    def build(backends: list[Backend] | None = None, **overrides: object) -> Bot:
        config = load_config(bot_dir, environ={})
        update: dict[str, object] = {"database_url": store_url}
        for key, value in overrides.items():
            section, _, field = key.partition("__")
            if field:
                current = update.get(section, getattr(config, section))
                update[section] = current.model_copy(update={field: value})  # type: ignore[attr-defined]
            else:
                update[key] = value
        bot = Bot(config.model_copy(update=update), backends=backends)
        bots.append(bot)
        return bot

    return build
