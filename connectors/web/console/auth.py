"""Console sign-in: session cookies, CSRF tokens, and the request checks every route makes.

- The session cookie holds a random token signed with HMAC-SHA256 under a key derived from
  the server secret (``web.secret`` / ``<data_dir>/secret.key``); the database keeps only
  the token's SHA-256, with an expiry (``console.session_hours``). The cookie is
  ``HttpOnly``, ``SameSite=Strict``, scoped to ``/console`` and ``Secure`` over HTTPS.
- Every state-changing request (any method but GET/HEAD) must carry the session's CSRF
  token, in a ``csrf`` form field or an ``X-CSRF-Token`` header, and, when the browser sends
  an ``Origin``, come from the console's own origin. The sign-in form uses a double-submit
  token (a cookie and a hidden field that must match).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from urllib.parse import parse_qsl, quote

from fastapi import HTTPException, Request, Response

from botkit.agents import Session
from connectors.web.console.state import ConsoleState
from connectors.web.security import normalize_origin

SESSION_COOKIE = "botkit_console"
LOGIN_COOKIE = "botkit_console_login"
COOKIE_PATH = "/console"
CSRF_HEADER = "x-csrf-token"
MAX_FORM_FIELDS = 20


def _mac(key: bytes, value: str) -> str:
    digest = hmac.new(key, value.encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def cookie_key(secret: bytes) -> bytes:
    """The key that signs console cookies (derived, so it differs from the conversation-token key)."""
    return hmac.new(secret, b"botkit console cookies", hashlib.sha256).digest()


def sign(key: bytes, token: str) -> str:
    """``token.signature``."""
    return f"{token}.{_mac(key, token)}"


def unsign(key: bytes, value: str | None) -> str | None:
    """The token of a signed cookie value, or ``None`` when the signature does not match."""
    if not value or "." not in value:
        return None
    token, mac = value.rsplit(".", 1)
    return token if hmac.compare_digest(_mac(key, token), mac) else None


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_session_cookie(response: Response, request: Request, state: ConsoleState, token: str) -> None:
    """Attach the signed session cookie."""
    response.set_cookie(SESSION_COOKIE, sign(state.cookie_key, token), max_age=int(state.settings.session_hours * 3600),
                        path=COOKIE_PATH, httponly=True, samesite="strict", secure=_secure(request))


def clear_session_cookie(response: Response) -> None:
    """Remove the session cookie."""
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")


def login_token(request: Request, state: ConsoleState) -> tuple[str, bool]:
    """The sign-in form's double-submit token: the browser's, or a new one (``True``: set its cookie)."""
    token = unsign(state.cookie_key, request.cookies.get(LOGIN_COOKIE))
    return (token, False) if token else (secrets.token_urlsafe(24), True)


def set_login_cookie(response: Response, request: Request, state: ConsoleState, token: str) -> None:
    """Attach the sign-in form's token cookie."""
    response.set_cookie(LOGIN_COOKIE, sign(state.cookie_key, token), max_age=3600, path=COOKIE_PATH,
                        httponly=True, samesite="strict", secure=_secure(request))


def check_login_token(request: Request, state: ConsoleState, form: dict[str, str]) -> None:
    """403 unless the sign-in form's token matches its cookie."""
    expected = unsign(state.cookie_key, request.cookies.get(LOGIN_COOKIE))
    if expected is None or not hmac.compare_digest(expected, form.get("csrf", "")):
        raise HTTPException(403, "the sign-in form expired; reload the page and try again")


async def read_form(request: Request) -> dict[str, str]:
    """The urlencoded body of a form post (the body size is limited by the app's middleware)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise HTTPException(415, "send the form as application/x-www-form-urlencoded")
    try:
        pairs = parse_qsl((await request.body()).decode("utf-8"), keep_blank_values=True,
                          max_num_fields=MAX_FORM_FIELDS, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise HTTPException(400, "malformed form") from None
    return dict(pairs)


def check_origin(request: Request) -> None:
    """403 for a cross-site ``Origin`` on a state-changing request."""
    origin = request.headers.get("origin")
    if origin is None:
        return
    own = str(request.base_url).rstrip("/")
    try:
        same = normalize_origin(origin) == normalize_origin(own)
    except ValueError:
        same = False
    if not same:
        raise HTTPException(403, "cross-site request refused")


async def current_session(request: Request, state: ConsoleState) -> Session | None:
    """The signed-in agent's session, or ``None`` (no cookie, bad signature, expired, disabled)."""
    token = unsign(state.cookie_key, request.cookies.get(SESSION_COOKIE))
    return await state.agents.session(token) if token else None


def login_redirect(request: Request) -> HTTPException:
    """A 303 to the sign-in page that comes back here afterwards."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return HTTPException(303, "sign in first", headers={"Location": f"/console/login?next={quote(target, safe='')}"})


async def page_session(request: Request, state: ConsoleState) -> Session:
    """The session for a page (GET): else a redirect to the sign-in page."""
    session = await current_session(request, state)
    if session is None:
        raise login_redirect(request)
    return session


async def action_session(request: Request, state: ConsoleState) -> tuple[Session, dict[str, str]]:
    """The session and form of a state-changing request: 401 without a session, 403 without
    the session's CSRF token or from another origin."""
    check_origin(request)
    session = await current_session(request, state)
    if session is None:
        raise HTTPException(401, "sign in first")
    form = await read_form(request) if request.headers.get("content-type") else {}
    given = request.headers.get(CSRF_HEADER) or form.get("csrf", "")
    if not hmac.compare_digest(session.csrf.encode(), given.encode("utf-8", "replace")):
        raise HTTPException(403, "missing or wrong CSRF token; reload the page and try again")
    return session, form


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a console path only (no open redirects)."""
    if value and value.startswith("/console") and not value.startswith("//") and "\\" not in value:
        return value
    return "/console"
