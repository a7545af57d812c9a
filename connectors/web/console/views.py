"""Server-rendered HTML of the console: a layout and one function per page or fragment.

Every value that is not markup written here goes through :func:`e` (HTML escaping):
visitor messages, model output, document titles, agent emails. No inline script or
style (the pages are served under a strict CSP); ``console.js`` adds live updates.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from datetime import datetime
from html import escape
from urllib.parse import quote, urlsplit

from botkit.agents import Session
from botkit.inbox import Claim, Note, QueueItem
from botkit.store.base import Conversation, Message
from botkit.webhooks import Delivery, WebhookEndpoint

_EMAIL = re.compile(r"[\w.+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63})+")
RESOLUTIONS = ("resolved", "answered by email", "no reply from visitor", "duplicate", "spam", "other")


def e(value: object) -> str:
    """HTML-escape ``value`` (quotes included)."""
    return escape(str(value), quote=True)


def csrf_field(session: Session) -> str:
    """The hidden CSRF field of every form."""
    return f'<input type="hidden" name="csrf" value="{e(session.csrf)}">'


def layout(title: str, body: str, *, session: Session | None, active: str = "") -> str:
    """A whole console page."""
    nav = ""
    if session is not None:
        links = [("queue", "/console", "Queue"), ("analytics", "/console/analytics", "Analytics")]
        if session.agent.role == "admin":
            links.append(("webhooks", "/console/webhooks", "Webhooks"))
        items = "".join(f'<a href="{href}"{" aria-current=page" if key == active else ""}>{label}</a>'
                        for key, href, label in links)
        nav = (f'<header class="top"><nav aria-label="Console">{items}</nav><div class="who">'
               f'{e(session.agent.email)} <span class="role">{e(session.agent.role)}</span>'
               f'<form method="post" action="/console/logout">{csrf_field(session)}'
               '<button type="submit" class="link">Sign out</button></form></div></header>')
    csrf = f' data-csrf="{e(session.csrf)}"' if session else ""
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{e(title)} · botkit console</title>'
            '<link rel="stylesheet" href="/console/static/console.css">'
            '<link rel="stylesheet" href="/console/report.css">'
            f'<script src="/console/static/console.js" defer></script></head><body{csrf}>'
            f'<a class="skip" href="#main">Skip to content</a>{nav}<main id="main" tabindex="-1">{body}</main></body></html>')


def alert(message: str | None) -> str:
    """An error banner (announced by screen readers)."""
    return f'<p class="alert" role="alert">{e(message)}</p>' if message else ""


def login_page(*, token: str, next_url: str, error: str | None = None) -> str:
    """The sign-in form."""
    body = (f'<section class="login"><h1>Sign in</h1>{alert(error)}'
            f'<form method="post" action="/console/login"><input type="hidden" name="csrf" value="{e(token)}">'
            f'<input type="hidden" name="next" value="{e(next_url)}">'
            '<label for="email">Email</label><input id="email" name="email" type="email" autocomplete="username" required autofocus>'
            '<label for="password">Password</label>'
            '<input id="password" name="password" type="password" autocomplete="current-password" required>'
            '<button type="submit">Sign in</button></form></section>')
    return layout("Sign in", body, session=None)


def waiting(seconds: float) -> str:
    """``42 s``, ``7 min``, ``3 h 05 min``, ``2 d 4 h``."""
    s = int(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def queue_fragment(items: Sequence[QueueItem], session: Session) -> str:
    """The queue table (the live part of the queue page)."""
    if not items:
        return '<p class="empty">No conversation is waiting for a person.</p>'
    rows = []
    for item in items:
        c = item.conversation
        claim = "–" if item.claim is None else ("you" if item.claim.agent_id == session.agent.id else e(item.claim.agent_email))
        rows.append(f'<tr><td class="n">{waiting(item.waiting_s)}</td><td>{e(c.channel)}</td><td>{e(c.bot)}</td>'
                    f'<td><a href="/console/conversations/{quote(c.id)}">{e(item.question[:200] or "(no message)")}</a></td>'
                    f"<td>{e(item.reason)}</td><td>{claim}</td></tr>")
    return ('<table class="queue"><caption class="sr">Conversations waiting for a person, oldest first</caption>'
            '<thead><tr><th scope="col">Waiting</th><th scope="col">Channel</th><th scope="col">Bot</th>'
            '<th scope="col">Question</th><th scope="col">Why the bot escalated</th><th scope="col">Claimed by</th>'
            f'</tr></thead><tbody>{"".join(rows)}</tbody></table>')


def queue_page(items: Sequence[QueueItem], session: Session) -> str:
    """The queue page."""
    body = (f'<h1>Waiting for a person <span class="count">({len(items)})</span></h1>'
            f'<div id="live" data-live="/console?fragment=1" data-events="/console/events" aria-live="polite">'
            f"{queue_fragment(items, session)}</div>")
    return layout("Queue", body, session=session, active="queue")


def _url(value: object) -> str | None:
    parts = urlsplit(str(value or ""))
    return str(value) if parts.scheme in ("http", "https") and parts.netloc else None


def _message(m: Message) -> str:
    label = {"user": "Visitor", "assistant": "Bot", "agent": "Agent", "system": "System"}.get(m.role, m.role)
    at = f"{m.created_at:%Y-%m-%d %H:%M:%S}" if m.created_at else ""
    meta = []
    if m.role == "assistant":
        meta.append(f"backend {e(m.backend or '–')}")
        if m.latency_ms is not None:
            meta.append(f"{m.latency_ms} ms")
        if m.abstained:
            meta.append('<span class="tag">abstained</span>')
    cites = []
    for c in m.citations:
        title = e(c.get("title") or c.get("source") or "source")
        url = _url(c.get("url"))
        link = f'<a href="{e(url)}" rel="noopener noreferrer" target="_blank">{title}</a>' if url else title
        cites.append(f'<li>[{e(c.get("number", ""))}] {link} <span class="src">{e(c.get("source", ""))}</span></li>')
    citations = f'<ol class="cites" aria-label="Citations">{"".join(cites)}</ol>' if cites else ""
    return (f'<li class="msg {e(m.role)}" data-seq="{m.seq}"><div class="meta"><b>{label}</b> <time>{at}</time> '
            f'{" · ".join(meta)}</div><div class="text">{e(m.text)}</div>{citations}</li>')


def conversation_fragment(conversation: Conversation, history: Sequence[Message], notes: Sequence[Note],
                          claim: Claim | None, session: Session) -> str:
    """Status, actions, history and notes of a conversation (the live part of its page)."""
    c, me = conversation, session.agent
    mine = claim is not None and claim.agent_id == me.id
    handoff_at = c.metadata.get("handoff_at")
    facts = [f"state <b>{e(c.state)}</b>", f"channel {e(c.channel)}", f"bot {e(c.bot)}"]
    if c.metadata.get("handoff_reason"):
        facts.append(f"escalated: {e(c.metadata['handoff_reason'])}")
    if c.state == "handoff" and isinstance(handoff_at, (int, float)):
        facts.append(f"waiting {waiting(time.time() - handoff_at)}")
    emails = sorted({found for m in history if m.role == "user" for found in _EMAIL.findall(m.text)})
    if emails:  # left outside business hours, to be answered by email
        facts.append("visitor's email: " + ", ".join(e(x) for x in emails[:3]))
    if c.metadata.get("resolution"):
        facts.append(f"resolution: {e(c.metadata['resolution'])}")
    facts.append("claimed by " + ("you" if mine else e(claim.agent_email)) if claim else "not claimed")
    base = f"/console/conversations/{quote(c.id)}"
    actions = []
    if c.state == "handoff" and claim is None:
        actions.append(_button(base + "/claim", "Claim", session, primary=True))
    if claim is not None and (mine or me.role == "admin"):
        actions.append(_button(base + "/release", "Release", session))
    if c.state == "handoff" and (mine or me.role == "admin"):
        actions.append(_button(base + "/handback", "Hand back to the bot", session))
        options = "".join(f'<option value="{e(r)}">{e(r)}</option>' for r in RESOLUTIONS)
        actions.append(f'<form method="post" action="{base}/close" class="inline">{csrf_field(session)}'
                       f'<label for="resolution">Resolution</label><select id="resolution" name="resolution">{options}'
                       '</select><button type="submit">Close</button></form>')
    note_items = "".join(f'<li><div class="meta"><b>{e(n.author or "deleted agent")}</b> '
                         f"<time>{n.created_at:%Y-%m-%d %H:%M}</time></div>{e(n.text)}</li>" for n in notes)
    return (f'<p class="facts">{" · ".join(facts)}</p><div class="actions">{"".join(actions)}</div>'
            f'<h2>History</h2><ol class="history">{"".join(_message(m) for m in history)}</ol>'
            f'<h2>Internal notes</h2><ul class="notes">{note_items or "<li class=empty>No notes.</li>"}</ul>')


def _button(action: str, label: str, session: Session, *, primary: bool = False) -> str:
    cls = ' class="primary"' if primary else ""
    return (f'<form method="post" action="{e(action)}" class="inline">{csrf_field(session)}'
            f'<button type="submit"{cls}>{e(label)}</button></form>')


def conversation_page(conversation: Conversation, history: Sequence[Message], notes: Sequence[Note],
                      claim: Claim | None, session: Session, *, error: str | None = None) -> str:
    """A conversation: its live part, the reply form (when the agent holds it) and the note form."""
    c = conversation
    base = f"/console/conversations/{quote(c.id)}"
    reply = ""
    if c.state == "handoff" and claim is not None and claim.agent_id == session.agent.id:
        reply = (f'<form method="post" action="{base}/reply" class="compose">{csrf_field(session)}'
                 '<label for="reply">Reply to the visitor</label>'
                 '<textarea id="reply" name="text" rows="3" required maxlength="4000"></textarea>'
                 '<button type="submit" class="primary">Send reply</button></form>')
    note = (f'<form method="post" action="{base}/notes" class="compose">{csrf_field(session)}'
            '<label for="note">Internal note (never shown to the visitor)</label>'
            '<textarea id="note" name="text" rows="2" required maxlength="4000"></textarea>'
            '<button type="submit">Add note</button></form>')
    body = (f'<p><a href="/console">← Queue</a></p><h1>Conversation <code>{e(c.id)}</code></h1>{alert(error)}'
            f'<div id="live" data-live="{base}?fragment=1" data-events="/console/events?conversation={quote(c.id)}">'
            f"{conversation_fragment(c, history, notes, claim, session)}</div>{reply}{note}")
    return layout(f"Conversation {c.id}", body, session=session, active="queue")


def analytics_page(body: str, session: Session, *, since: str, gaps_href: str) -> str:
    """The analytics page around the report fragment."""
    head = (f'<h1>Analytics</h1><form method="get" action="/console/analytics" class="inline">'
            f'<label for="since">Since</label><input id="since" name="since" type="date" value="{e(since)}">'
            f'<button type="submit">Show</button></form> <a href="{e(gaps_href)}" download>Knowledge gaps (CSV)</a>')
    return layout("Analytics", head + body, session=session, active="analytics")


def _when(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S}" if value else "–"


def webhooks_page(endpoints: Sequence[WebhookEndpoint], deliveries: Sequence[Delivery], session: Session) -> str:
    """Endpoints and recent deliveries (admins)."""
    ends = "".join(f"<tr><td><code>{e(x.id)}</code></td><td>{e(x.url)}</td><td>{e(', '.join(x.events))}</td>"
                   f"<td>{_when(x.created_at)}</td></tr>" for x in endpoints)
    rows = []
    for d in deliveries:
        retry = "" if d.status == "delivered" else _button(f"/console/webhooks/deliveries/{d.id}/retry", "Retry now", session)
        rows.append(f'<tr><td class="n">{d.id}</td><td><code>{e(d.endpoint_id)}</code></td><td>{e(d.event_type)}</td>'
                    f'<td><span class="tag {e(d.status)}">{e(d.status)}</span></td><td class="n">{d.attempts}</td>'
                    f"<td>{e(d.last_status or '–')}</td><td>{e((d.last_error or '')[:120])}</td>"
                    f"<td>{_when(d.delivered_at or d.next_attempt_at)}</td><td>{retry}</td></tr>")
    body = ('<h1>Webhooks</h1><p>Add endpoints with <code>botkit webhooks add URL</code>.</p>'
            '<h2>Endpoints</h2><table><thead><tr><th>id</th><th>URL</th><th>events</th><th>created</th></tr></thead>'
            f'<tbody>{ends or "<tr><td colspan=4>No endpoints.</td></tr>"}</tbody></table>'
            '<h2>Recent deliveries</h2><table><thead><tr><th>#</th><th>endpoint</th><th>event</th><th>status</th>'
            '<th>attempts</th><th>HTTP</th><th>last error</th><th>delivered / next attempt</th><th></th></tr></thead>'
            f'<tbody>{"".join(rows) or "<tr><td colspan=9>No deliveries yet.</td></tr>"}</tbody></table>')
    return layout("Webhooks", body, session=session, active="webhooks")


def message_page(title: str, message: str, session: Session | None) -> str:
    """A short page for errors (not found, forbidden)."""
    return layout(title, f"<h1>{e(title)}</h1>{alert(message)}<p><a href=\"/console\">Back to the queue</a></p>",
                  session=session)
