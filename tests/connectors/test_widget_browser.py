"""The widget in headless Chromium (Playwright) against the real server and bot."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

playwright_api = pytest.importorskip("playwright.async_api")

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

SCREENSHOT = Path(os.environ.get("BOTKIT_WIDGET_SCREENSHOT", "/tmp/botkit-widget.png"))
W = "#botkit-widget >> "  # Playwright's CSS engine pierces the open shadow root
QUESTION = "How do I reset my password?"
XSS = '<img src=x onerror="window.__xss=1">'


async def _ask(page: Any, text: str) -> Any:
    """Type a message, send it with Enter; return the SSE response and the reply bubble."""
    await page.locator(W + ".greeting").wait_for()
    count = await page.locator(W + ".msg.assistant").count()
    await page.fill(W + "textarea", text)
    async with page.expect_response(lambda r: r.url.endswith("/messages") and r.request.method == "POST") as info:
        await page.keyboard.press("Enter")
    response = await info.value
    reply = page.locator(W + ".msg.assistant").nth(count)
    await reply.locator(".actions").wait_for(timeout=30_000)  # rendered once the final event arrived
    return response, reply


async def test_ask_stream_cite_reload_and_escape(browser: Any, live_server: str) -> None:
    context = await browser.new_context(viewport={"width": 1200, "height": 800})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(live_server + "/")
    launcher = page.locator(W + ".launcher")
    assert await launcher.get_attribute("aria-expanded") == "false"
    await launcher.click()
    assert await launcher.get_attribute("aria-expanded") == "true"
    assert await page.evaluate("document.activeElement.id") == "botkit-widget"  # focus moved into the widget
    assert await page.locator(W + ".log").get_attribute("aria-live") == "polite"

    response, reply = await _ask(page, QUESTION)
    assert response.headers["content-type"].startswith("text/event-stream")
    text = await reply.locator(".body").inner_text()
    assert len(text) > 20
    sources = reply.locator(".sources li")
    assert await sources.count() >= 1
    source_text = " ".join(await sources.all_inner_texts()).lower()
    assert "password" in source_text
    for link in await reply.locator(".sources a").all():  # links only for http(s) URLs
        assert (await link.get_attribute("href") or "").startswith(("http://", "https://"))
    await reply.locator("button[aria-label='Helpful']").click()
    assert await reply.locator("button[aria-label='Helpful']").get_attribute("aria-pressed") == "true"
    await page.screenshot(path=str(SCREENSHOT))

    await page.reload()
    await page.locator(W + ".launcher").click()
    history = page.locator(W + ".msg.user")
    await history.first.wait_for()
    assert await history.first.inner_text() == QUESTION
    assert await page.locator(W + ".msg.assistant .sources").count() >= 1

    await page.keyboard.press("Escape")
    assert await page.locator(W + ".panel").is_hidden()
    assert await page.locator(W + ".launcher").get_attribute("aria-expanded") == "false"
    assert errors == []
    await context.close()


async def test_html_in_messages_is_rendered_as_text(browser: Any, live_server: str) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(live_server + "/")
    await page.locator(W + ".launcher").click()
    await _ask(page, XSS)
    await page.wait_for_timeout(300)
    assert await page.evaluate("window.__xss") is None
    assert await page.locator(W + ".msg.user").last.inner_text() == XSS
    assert await page.locator(W + "img").count() == 0
    await page.reload()  # the history is rendered as text too
    await page.locator(W + ".launcher").click()
    await page.locator(W + ".msg.user").first.wait_for()
    assert await page.locator(W + ".msg.user").first.inner_text() == XSS
    assert await page.evaluate("window.__xss") is None
    await context.close()


async def test_phone_viewport_is_full_screen(browser: Any, live_server: str) -> None:
    context = await browser.new_context(viewport={"width": 390, "height": 740}, is_mobile=True, has_touch=True)
    page = await context.new_page()
    await page.goto(live_server + "/")
    await page.locator(W + ".launcher").click()
    box = await page.locator(W + ".panel").bounding_box()
    assert box is not None
    assert (box["x"], box["y"], box["width"], box["height"]) == (0, 0, 390, 740)
    assert await page.locator(W + "textarea").is_visible()
    await page.locator(W + "button[aria-label='Close chat']").click()
    assert await page.locator(W + ".panel").is_hidden()
    await context.close()


async def test_talk_to_a_human(browser: Any, live_server: str) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(live_server + "/")
    await page.locator(W + ".launcher").click()
    await page.locator(W + ".greeting").wait_for()
    async with page.expect_response(lambda r: r.url.endswith("/messages") and r.request.method == "POST"):
        await page.locator(W + "button.human").click()
    reply = page.locator(W + ".msg.assistant").nth(1)  # after the greeting
    await reply.locator(".body").wait_for()
    await page.wait_for_function(
        "() => !document.querySelector('#botkit-widget').shadowRoot.querySelector('[aria-busy=true]')")
    assert "human" in (await page.locator(W + ".msg.user").last.inner_text()).lower()
    assert (await reply.inner_text()).strip()
    await context.close()


async def test_suggested_questions_are_offered_until_the_first_message(browser: Any, web_bot: Any, kit: Any) -> None:
    from connectors.web.app import create_app

    offered = [QUESTION, "Do you have a free trial?"]
    app = create_app(web_bot, settings=kit.web_settings(suggestions=offered), owns_bot=False)
    try:
        async with kit.serve(app) as url:
            context = await browser.new_context()
            page = await context.new_page()
            await page.goto(url + "/")
            await page.locator(W + ".launcher").click()
            chips = page.locator(W + ".suggestions button")
            await chips.first.wait_for()
            assert await chips.all_inner_texts() == offered
            assert await page.locator(W + ".suggestions").get_attribute("aria-label") == "Suggested questions"
            await chips.first.focus()  # keyboard-usable: Enter on a focused suggestion sends it
            async with page.expect_response(lambda r: r.url.endswith("/messages") and r.request.method == "POST"):
                await page.keyboard.press("Enter")
            reply = page.locator(W + ".msg.assistant").nth(1)  # after the greeting
            await reply.locator(".actions").wait_for(timeout=30_000)
            assert await page.locator(W + ".msg.user").last.inner_text() == QUESTION
            assert await reply.locator(".sources li").count() >= 1
            assert await page.locator(W + ".suggestions").count() == 0  # withdrawn by the first message

            await page.reload()  # a conversation with messages is not offered them again
            await page.locator(W + ".launcher").click()
            await page.locator(W + ".greeting").wait_for()
            await page.locator(W + ".msg.user").first.wait_for()
            await page.wait_for_timeout(300)
            assert await page.locator(W + ".suggestions").count() == 0
            await context.close()
    finally:
        await app.state.web.aclose()
