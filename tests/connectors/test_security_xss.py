"""XSS: a corpus of payloads through user messages, documents and model output, rendered
by the widget in headless Chromium. Nothing may execute.

The corpus is ``xss_payloads.txt`` (72 payloads, each setting ``window.__xss`` if it
runs). They reach the widget three ways: as user messages, as the retrieved documents'
titles, sections, text and URLs (the citations), and as the model's own output (a
ScriptedBackend replying with the payloads). The page is served with its CSP *removed*
(the widget is embedded on sites without one), so only the widget's own rendering stands
between a payload and execution. Checks: ``window.__xss`` never set, no dialog, and in the
widget's DOM no element a payload could have created (script, img, iframe, svg outside
the icons, ...), no ``on*`` attribute and no link other than http(s) - while the payloads
do show, as text.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from botkit.backends.scripted import ScriptedBackend
from botkit.bot import Bot
from botkit.config import BotConfig, EscalationSettings, KnowledgeSettings
from knowledge.types import Passage
from tests.helpers.fixed_knowledge import FixedKnowledge

playwright_api = pytest.importorskip("playwright.async_api")

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

W = "#botkit-widget >> "
PAYLOADS = [line for line in (Path(__file__).parent / "xss_payloads.txt").read_text(encoding="utf-8")
            .splitlines() if line.strip() and not line.startswith("# ")]
PER_TURN = 9  # payloads per history turn
TOP_K = 5

# Everything a payload could have created inside the widget's conversation log.
AUDIT_JS = """() => {
  const root = document.querySelector('#botkit-widget').shadowRoot;
  const log = root.querySelector('.log');
  const bad = [];
  const forbidden = new Set(['SCRIPT','IMG','IFRAME','OBJECT','EMBED','VIDEO','AUDIO','SOURCE','STYLE','LINK','META',
    'BASE','FORM','INPUT','SELECT','TEXTAREA','MATH','TEMPLATE','DETAILS','MARQUEE','NOSCRIPT','XSS','FRAME','BODY']);
  for (const node of root.querySelectorAll('*')) {
    for (const attr of node.attributes) {
      if (attr.name.toLowerCase().startsWith('on')) bad.push(node.tagName + '[' + attr.name + ']');
      if (['href', 'src', 'action', 'formaction', 'srcdoc', 'data'].includes(attr.name.toLowerCase())
          && !/^https?:/i.test(attr.value)) bad.push(node.tagName + '[' + attr.name + '=' + attr.value.slice(0, 40) + ']');
    }
  }
  for (const node of log.querySelectorAll('*')) {
    if (forbidden.has(node.tagName.toUpperCase())) bad.push('<' + node.tagName + '>');
    if (node.namespaceURI === 'http://www.w3.org/2000/svg' && !node.closest('button')) bad.push('<svg ' + node.tagName + '>');
  }
  return {bad, text: log.textContent, links: [...log.querySelectorAll('a')].map(a => a.getAttribute('href')),
          assistant: log.querySelectorAll('.msg.assistant').length, user: log.querySelectorAll('.msg.user').length};
}"""


class PayloadRetriever:
    """Passages whose title, section, text and URL are payloads (a poisoned help centre)."""

    def __init__(self) -> None:
        self.calls = 0

    def retrieve(self, query: str, *, k: int | None = None, message: str | None = None) -> list[Passage]:
        base = self.calls * TOP_K * 3
        self.calls += 1
        passages = []
        for j in range(TOP_K):
            title, section, text = (PAYLOADS[(base + 3 * j + n) % len(PAYLOADS)] for n in range(3))
            url = text if ":" in text and "http" not in text else "javascript:window.__xss=1"
            passages.append(Passage(chunk_id=f"x{base}-{j}", source=f"evil/{j}.md\"><img src=x onerror=window.__xss=1>",
                                    title=title, section=section, text=text, score=0.9, url=url))
        return passages


def _cite_all(text: str) -> str:
    return text + " " + " ".join(f"[{n}]" for n in range(1, TOP_K + 1))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def xss_server(tmp_path_factory: pytest.TempPathFactory, kit: Any) -> AsyncIterator[tuple[str, Bot, ScriptedBackend, Any]]:
    from connectors.web.app import create_app

    root = tmp_path_factory.mktemp("xss")
    config = BotConfig(name="xss", backends=["scripted"], data_dir=str(root / "data"), root=root,
                       knowledge=KnowledgeSettings(top_k=TOP_K), escalation=EscalationSettings(enabled=False))
    backend = ScriptedBackend()
    bot = Bot(config, backends=[backend], knowledge=FixedKnowledge(PayloadRetriever()))
    await bot.start()
    app = create_app(bot, settings=kit.web_settings(), owns_bot=False)
    try:
        async with kit.serve(app) as url:
            yield url, bot, backend, app.state.web.tokens
    finally:
        await app.state.web.aclose()
        await bot.aclose()


async def _page_without_csp(browser: Any, url: str, session: dict[str, str] | None, kit: Any) -> tuple[Any, Any, list[str]]:
    context = await browser.new_context()
    events: list[str] = []

    async def strip_csp(route: Any) -> None:
        response = await route.fetch()
        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-security-policy"}
        await route.fulfill(response=response, headers=headers)

    await context.route("**/*", strip_csp)
    if session is not None:
        key = json.dumps(f"botkit:{url}:{kit.PUBLIC_KEY}")
        await context.add_init_script(f"localStorage.setItem({key}, {json.dumps(json.dumps(session))});")
    page = await context.new_page()
    page.on("dialog", lambda dialog: (events.append(f"dialog: {dialog.message}"), dialog.dismiss()))
    page.on("pageerror", lambda exc: events.append(f"pageerror: {exc}"))
    await page.goto(url + "/")
    return context, page, events


async def test_corpus_is_large_enough() -> None:
    assert len(PAYLOADS) >= 50 and len(set(PAYLOADS)) == len(PAYLOADS)
    assert all("__xss" in p for p in PAYLOADS)


async def test_payloads_in_history_and_citations_never_execute(browser: Any, xss_server: Any, kit: Any) -> None:
    url, bot, backend, tokens = xss_server
    conversation_id = await bot.new_conversation(channel="web")
    groups = [PAYLOADS[i:i + PER_TURN] for i in range(0, len(PAYLOADS), PER_TURN)]
    for group in groups:  # user text and model output are payloads; citations carry more
        backend.enqueue(_cite_all("\n\n".join(group)))
        reply = await bot.reply(conversation_id, "\n".join(group), channel="web")
        assert len(reply.citations) == TOP_K
    context, page, events = await _page_without_csp(
        browser, url, {"id": conversation_id, "token": tokens.issue(conversation_id)}, kit)
    try:
        await page.locator(W + ".launcher").click()
        await page.wait_for_function(
            "n => document.querySelector('#botkit-widget').shadowRoot.querySelectorAll('.msg.assistant').length >= n",
            arg=len(groups), timeout=30_000)
        log = page.locator(W + ".log")
        await log.hover()
        for link in await page.locator(W + ".log a").all():
            await link.hover()
        await page.wait_for_timeout(500)  # let any timer, load or error handler run
        audit = await page.evaluate(AUDIT_JS)
        executed = await page.evaluate("() => window.__xss === undefined ? null : String(window.__xss)")
    finally:
        await context.close()
    assert executed is None and not events, (executed, events)
    assert audit["bad"] == [], audit["bad"][:20]
    assert audit["user"] >= len(groups) and audit["assistant"] >= len(groups)
    shown = sum(1 for p in PAYLOADS if p.replace("`", "").split()[0].strip("*[!`") in audit["text"])
    assert shown >= 0.9 * len(PAYLOADS), f"only {shown} payloads visible as text"
    assert all((href or "").startswith(("http://", "https://")) for href in audit["links"])
    print(f"\nXSS (history + citations): {len(PAYLOADS)} payloads x 3 paths, executed 0, "
          f"unsafe DOM nodes {len(audit['bad'])}, links {len(audit['links'])}")


async def test_payloads_streamed_live_never_execute(browser: Any, xss_server: Any, kit: Any) -> None:
    url, _bot, backend, _tokens = xss_server
    backend.enqueue(_cite_all("\n".join(PAYLOADS)), chunks=None)
    context, page, events = await _page_without_csp(browser, url, None, kit)
    try:
        await page.locator(W + ".launcher").click()
        await page.locator(W + ".greeting").wait_for()
        count = await page.locator(W + ".msg.assistant").count()
        message = "\n".join(PAYLOADS[:25])[:3900]
        await page.fill(W + "textarea", message)
        await page.keyboard.press("Enter")
        reply = page.locator(W + ".msg.assistant").nth(count)
        await reply.locator(".actions").wait_for(timeout=30_000)
        await page.locator(W + ".log").hover()
        await page.wait_for_timeout(500)
        audit = await page.evaluate(AUDIT_JS)
        executed = await page.evaluate("() => window.__xss === undefined ? null : String(window.__xss)")
    finally:
        await context.close()
    assert executed is None and not events, (executed, events)
    assert audit["bad"] == [], audit["bad"][:20]
    assert "<img src=x onerror" in audit["text"] and "<script>window.__xss=1</script>" in audit["text"]
