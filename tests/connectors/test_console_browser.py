"""Visitor (widget) and agent (console) in two Chromium contexts against the real server."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from botkit.agents import AgentDirectory
from botkit.bot import Bot

playwright_api = pytest.importorskip("playwright.async_api")

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

W = "#botkit-widget >> "  # Playwright's CSS engine pierces the widget's open shadow root
PASSWORD = "a long test password"


def _watch(page: Any, problems: list[str]) -> None:
    page.on("pageerror", lambda exc: problems.append(f"{page.url}: {exc}"))
    page.on("console", lambda msg: problems.append(f"{page.url}: {msg.text}")
            if msg.type == "error" and "Content Security Policy" in msg.text else None)


async def _visitor_says(page: Any, text: str) -> Any:
    """Send a message from the widget; return the bot's reply bubble once it is complete."""
    count = await page.locator(W + ".msg.assistant").count()
    await page.fill(W + "textarea", text)
    await page.keyboard.press("Enter")
    reply = page.locator(W + ".msg.assistant").nth(count)
    await reply.locator(".actions").wait_for(timeout=30_000)
    return reply


async def test_visitor_reaches_an_agent_and_back(browser: Any, live_server: str, web_bot: Bot) -> None:
    email = f"agent-{uuid.uuid4().hex[:8]}@example.com"
    directory = AgentDirectory.from_url(web_bot.config.resolved_database_url)
    try:
        await directory.create(email, PASSWORD, bots=[web_bot.name])
    finally:
        await directory.aclose()
    problems: list[str] = []
    agent_context = await browser.new_context()
    visitor_context = await browser.new_context()
    try:
        agent = await agent_context.new_page()
        _watch(agent, problems)
        await agent.goto(live_server + "/console")
        assert "/console/login" in agent.url
        await agent.fill("#email", email)
        await agent.fill("#password", PASSWORD)
        await agent.keyboard.press("Enter")
        await agent.locator("h1", has_text="Waiting for a person").wait_for()

        visitor = await visitor_context.new_page()
        _watch(visitor, problems)
        await visitor.goto(live_server + "/")
        await visitor.locator(W + ".launcher").click()
        await visitor.locator(W + ".greeting").wait_for()
        handoff = await _visitor_says(visitor, "Can I pay by bank transfer? I'd like to talk to a human")
        assert "support team" in (await handoff.inner_text()).lower()
        session = await visitor.evaluate(
            "() => Object.keys(localStorage).filter(k => k.startsWith('botkit:')).map(k => localStorage.getItem(k))[0]")
        conversation_id = json.loads(session)["id"]

        # The queue shows the new conversation without a reload (Server-Sent Events).
        link = agent.locator(f"a[href='/console/conversations/{conversation_id}']")
        await link.wait_for(timeout=20_000)
        assert "Can I pay by bank transfer?" in await link.inner_text()
        row = agent.locator("tr", has=link)
        assert "asked for a person" in await row.inner_text()
        await link.focus()
        await agent.keyboard.press("Enter")  # keyboard-usable: links and buttons
        await agent.locator("button", has_text="Claim").focus()
        await agent.keyboard.press("Enter")
        await agent.locator("#reply").wait_for()
        assert "claimed by you" in await agent.locator("#live").inner_text()
        await agent.fill("#reply", "Hello! Yes, bank transfers are fine; I've sent you the details.")
        await agent.locator("button", has_text="Send reply").click()
        await agent.locator("li.msg.agent").wait_for()

        # The visitor sees the agent's reply without reloading the page.
        answer = visitor.locator(W + ".msg.agent")
        await answer.wait_for(timeout=20_000)
        assert "bank transfers are fine" in await answer.inner_text()

        await agent.locator("button", has_text="Hand back to the bot").click()
        await agent.locator("h1", has_text="Waiting for a person").wait_for()
        reply = await _visitor_says(visitor, "How do I reset my password?")
        assert "password" in (await reply.locator(".body").inner_text()).lower()
        assert await reply.locator(".sources li").count() >= 1
        assert problems == []
    finally:
        await agent_context.close()
        await visitor_context.close()
