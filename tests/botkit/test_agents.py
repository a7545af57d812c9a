"""Agent accounts, sessions, business hours, and the handoff inbox (claims, replies, notes)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from botkit.agents import AgentDirectory, handoff_message, hash_password, is_open, next_opening, verify_password
from botkit.config import BotConfig, BusinessHoursSettings
from botkit.errors import StoreError
from botkit.inbox import Inbox, InboxError, NotVisible, visitor_question
from botkit.store import SQLConversationStore, create_engine
from botkit.webhooks import BotEvent

PASSWORD = "correct horse battery"


@pytest.fixture
async def env(store_url: str) -> AsyncIterator[dict[str, Any]]:
    store = SQLConversationStore(store_url, lock_lease_s=1.0)
    await store.open()
    engine = create_engine(store_url)
    events: list[BotEvent] = []

    async def observe(event: BotEvent) -> None:
        events.append(event)

    tag = uuid.uuid4().hex[:8]  # PostgreSQL's database is shared by the session's tests
    try:
        yield {"store": store, "agents": AgentDirectory(engine), "events": events, "tag": tag,
               "inbox": Inbox(store=store, engine=engine, observers=[observe])}
    finally:
        await store.close()
        await engine.dispose()


async def _handed_off(store: SQLConversationStore, bot: str = "acme", question: str = "Where is my invoice?") -> str:
    conversation = await store.create_conversation(bot=bot, channel="web")
    await store.add_user_message(conversation.id, question)
    await store.add_user_message(conversation.id, "talk to a human")
    await store.update_metadata(conversation.id, {"handoff_reason": "asked for a person", "handoff_at": 1e9})
    await store.set_state(conversation.id, "handoff")
    return conversation.id


def test_passwords_are_argon2_hashed() -> None:
    hashed = hash_password(PASSWORD)
    assert hashed.startswith("$argon2id$") and PASSWORD not in hashed
    assert verify_password(hashed, PASSWORD)
    assert not verify_password(hashed, PASSWORD + "!")
    assert not verify_password("not a hash", PASSWORD)
    with pytest.raises(ValueError, match="at least 10"):
        hash_password("short")


async def test_accounts_and_sessions(env: dict[str, Any]) -> None:
    agents: AgentDirectory = env["agents"]
    ana = await agents.create(f" Ana@{env['tag']}.example.com ", PASSWORD, bots=["acme"])
    email = ana.email
    assert email == f"ana@{env['tag']}.example.com" and ana.role == "agent" and ana.bots == ("acme",)
    assert ana.can_see("acme") and not ana.can_see("other")
    with pytest.raises(StoreError, match="already exists"):
        await agents.create(email, PASSWORD)
    with pytest.raises(ValueError):
        await agents.create("not-an-email", PASSWORD)
    assert (await agents.authenticate(email.upper(), PASSWORD)) == ana
    assert await agents.authenticate(email, "wrong password") is None
    assert await agents.authenticate("nobody@example.com", PASSWORD) is None

    token, session = await agents.start_session(ana, hours=1)
    found = await agents.session(token)
    assert found is not None and found.agent.id == ana.id and found.csrf == session.csrf
    assert await agents.session(token + "x") is None
    assert await agents.session(token, now=datetime.now(timezone.utc) + timedelta(hours=2)) is None  # expired
    await agents.end_session(token)
    assert await agents.session(token) is None

    token, _ = await agents.start_session(ana, hours=1)
    assert await agents.update(email, disabled=True)
    assert await agents.session(token) is None  # disabling signs out
    assert await agents.authenticate(email, PASSWORD) is None
    assert await agents.update(email, disabled=False, password="a brand new password")
    assert await agents.authenticate(email, "a brand new password") is not None
    assert await agents.remove(email) and not await agents.remove(email)


async def test_claim_is_atomic_and_replies_need_the_claim(env: dict[str, Any]) -> None:
    store, inbox, agents = env["store"], env["inbox"], env["agents"]
    tag = env["tag"]
    bot = f"acme-{tag}"
    ana = await agents.create(f"ana@{tag}.example.com", PASSWORD, bots=[bot])
    bo = await agents.create(f"bo@{tag}.example.com", PASSWORD, bots=[bot])
    cid = await _handed_off(store, bot)
    [item] = await inbox.queue(ana)
    assert item.conversation.id == cid and item.question == "Where is my invoice?"
    assert item.reason == "asked for a person" and item.claim is None and item.waiting_s > 0

    results = await asyncio.gather(inbox.claim(ana, cid), inbox.claim(bo, cid), return_exceptions=True)
    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, InboxError)]
    assert len(winners) == 1 and len(losers) == 1 and "already claimed" in str(losers[0])
    holder = ana if winners[0].agent_id == ana.id else bo
    other = bo if holder is ana else ana
    with pytest.raises(InboxError, match="do not hold"):
        await inbox.reply(other, cid, "I'll take it")
    message = await inbox.reply(holder, cid, "Hi, I'm looking at your invoice now.")
    assert message.role == "agent" and message.reply_to is None
    assert env["events"][-1].type == "message.created" and env["events"][-1].data["message"]["role"] == "agent"

    note = await inbox.add_note(other, cid, "Customer since 2019, be nice.")
    assert [n.text for n in await inbox.notes(holder, cid)] == [note.text]
    assert all(m.role != "system" and "2019" not in m.text for m in await store.history(cid, limit=50))

    conversation = await inbox.hand_back(holder, cid)
    assert conversation.state == "bot" and await inbox.claim_of(cid) is None
    assert conversation.metadata["handoff_reason"] == "asked for a person"  # kept for analytics
    with pytest.raises(InboxError, match="waiting for a person"):
        await inbox.claim(holder, cid)


async def test_close_with_resolution_and_visibility(env: dict[str, Any]) -> None:
    store, inbox, agents = env["store"], env["inbox"], env["agents"]
    tag = env["tag"]
    bot = f"acme-{tag}"
    ana = await agents.create(f"ana@{tag}.example.com", PASSWORD, bots=[bot])
    admin = await agents.create(f"root@{tag}.example.com", PASSWORD, role="admin")
    mine, theirs = await _handed_off(store, bot), await _handed_off(store, bot=bot + "-other")
    assert [i.conversation.id for i in await inbox.queue(ana)] == [mine]
    assert {mine, theirs} <= {i.conversation.id for i in await inbox.queue(admin)}
    for action in (inbox.conversation(ana, theirs), inbox.claim(ana, theirs), inbox.notes(ana, theirs),
                   inbox.add_note(ana, theirs, "x"), inbox.conversation(ana, "missing")):
        with pytest.raises(NotVisible):
            await action
    await inbox.claim(ana, mine)
    closed = await inbox.close(admin, mine, "resolved")  # admins may close a claimed conversation
    assert closed.state == "closed" and closed.metadata["resolution"] == "resolved"
    assert env["events"][-1].type == "conversation.closed" and env["events"][-1].data["resolution"] == "resolved"


def test_visitor_question_skips_bare_requests_for_a_person() -> None:
    from botkit.store.base import Message

    def m(text: str, role: str = "user") -> Message:
        return Message(id=1, conversation_id="c", seq=1, role=role, text=text)  # type: ignore[arg-type]

    assert visitor_question([m("Can I pay by invoice?"), m("ok", "assistant"), m("talk to a human")]) == "Can I pay by invoice?"
    assert visitor_question([m("talk to a human")]) == "talk to a human"
    assert visitor_question([]) == ""


HOURS = BusinessHoursSettings(enabled=True, timezone="Europe/Paris", hours={"mon": ["09:00-17:00"], "tue": ["09:00-12:00", "14:00-18:00"]},
                              holidays=["2024-06-11"])


def test_business_hours_and_the_out_of_hours_handoff_message() -> None:
    paris_monday_10 = datetime(2024, 6, 3, 8, 0, tzinfo=timezone.utc)  # 10:00 in Paris (UTC+2)
    assert is_open(HOURS, paris_monday_10)
    config = BotConfig(business_hours=HOURS)
    assert handoff_message(config, paris_monday_10) == config.escalation.message
    evening = datetime(2024, 6, 3, 17, 30, tzinfo=timezone.utc)  # Monday 19:30 in Paris
    assert not is_open(HOURS, evening)
    assert next_opening(HOURS, evening) == datetime(2024, 6, 4, 9, 0, tzinfo=HOURS_ZONE())
    text = handoff_message(config, evening)
    assert "tomorrow at 09:00 (Europe/Paris)" in text and "email" in text
    lunch = datetime(2024, 6, 4, 10, 30, tzinfo=timezone.utc)  # Tuesday 12:30
    assert "today at 14:00" in handoff_message(config, lunch)
    before_holiday = datetime(2024, 6, 10, 16, 0, tzinfo=timezone.utc)  # Monday 18:00; Tuesday is a holiday
    assert "on Monday at 09:00" in handoff_message(config, before_holiday)
    assert handoff_message(BotConfig(), evening) == BotConfig().escalation.message  # off by default
    with pytest.raises(ValueError):
        BusinessHoursSettings(hours={"mon": ["17:00-09:00"]})


def HOURS_ZONE() -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo("Europe/Paris")


def test_agents_cli(tmp_path: Path) -> None:
    from botkit.cli import app

    (tmp_path / "bot.yaml").write_text("name: acme\n", encoding="utf-8")
    runner = CliRunner(env={"BOTKIT_TEST_POSTGRES_URL": None})
    created = runner.invoke(app, ["agents", "create", "ana@example.com", "--bot", str(tmp_path), "--password-stdin"],
                            input=PASSWORD + "\n")
    assert created.exit_code == 0, created.output
    admin = runner.invoke(app, ["agents", "create", "root@example.com", "--role", "admin", "--bot", str(tmp_path),
                                "--password-stdin"], input=PASSWORD + "\n")
    assert admin.exit_code == 0, admin.output
    listed = runner.invoke(app, ["agents", "list", "--json", "--bot", str(tmp_path)])
    rows = {row["email"]: row for row in __import__("json").loads(listed.stdout)}
    assert rows["ana@example.com"]["bots"] == ["acme"] and rows["root@example.com"]["role"] == "admin"
    assert "password" not in listed.stdout.lower()
    short = runner.invoke(app, ["agents", "create", "x@example.com", "--bot", str(tmp_path), "--password-stdin"],
                          input="short\n")
    assert short.exit_code == 2 and "at least 10" in short.output
    assert runner.invoke(app, ["agents", "remove", "ana@example.com", "--bot", str(tmp_path)]).exit_code == 0
    assert runner.invoke(app, ["agents", "remove", "ana@example.com", "--bot", str(tmp_path)]).exit_code == 2


async def test_out_of_hours_handoff_through_the_bot(make_bot: Any) -> None:
    closed = BusinessHoursSettings(enabled=True, timezone="UTC", hours={})  # nobody answers in the next two weeks
    async with make_bot(business_hours=closed) as bot:
        reply = await bot.reply(None, "I'd like to talk to a human, please.")
        assert reply.handoff and "offline" in reply.text and "as soon as possible" in reply.text
        assert "email address" in reply.text
