"""Structured logs: one JSON object per line, request ids, and secrets kept out.

``botkit serve`` calls :func:`configure` (and hands :func:`uvicorn_log_config` to uvicorn),
so every line a worker writes, uvicorn's included, is a JSON object::

    {"ts": "2026-01-02T10:00:00.123Z", "level": "info", "logger": "botkit.turn", "event": "turn",
     "conversation_id": "...", "request_id": "...", "backend": "openai:gpt-4o-mini",
     "outcome": "answered", "total_ms": 812.4, "retrieve_ms": 21.0, "first_token_ms": 402.7, ...}

One ``botkit.turn`` line is written per turn (:func:`botkit.metrics.turn_done`); it never
holds message text. Secrets never reach the output: the handler's :class:`RedactingFilter`
replaces the values of the bot's secret settings (API keys, tokens, the server secret)
and anything shaped like a key (``sk-...``, ``bk_...``, ``xoxb-...``, ``Bearer ...``) with
``[redacted]``, in the message, the arguments, the extra fields and tracebacks.

The request id comes from the web connector (``X-Request-ID``, or a new one) through a
context variable (:func:`request_id`, :func:`bind_request_id`), so lines written while a
request runs, in any task it starts, carry it.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
import traceback
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

REDACTED = "[redacted]"
FIELDS_ATTR = "botkit_fields"
_KEY_SHAPES = re.compile(
    r"(?:\bsk-[A-Za-z0-9_\-]{8,}|\bbk_[A-Za-z0-9_\-]{8,}|\bxox[abposr]-[A-Za-z0-9\-]{6,}|\bxapp-[A-Za-z0-9\-]{6,}"
    r"|\bct_[A-Za-z0-9_\-]{16,}|(?<=Bearer )[A-Za-z0-9._~+/\-]{8,}=*)"
)
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "color_message"}

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("botkit_request_id", default=None)
_secrets: set[str] = set()


# -- request ids -------------------------------------------------------------------------


def request_id() -> str | None:
    """The id of the request being served in this context, if any."""
    return _request_id.get()


def bind_request_id(value: str | None) -> contextvars.Token[str | None]:
    """Set the current request id (a valid client-sent one, else a new one); see :func:`new_request_id`."""
    return _request_id.set(value)


def reset_request_id(token: contextvars.Token[str | None]) -> None:
    """Undo :func:`bind_request_id`."""
    _request_id.reset(token)


def new_request_id(client_value: str | None = None) -> str:
    """``client_value`` when it is a safe id (1-64 of ``A-Za-z0-9._:-``), else a new random one."""
    if client_value and _REQUEST_ID.fullmatch(client_value):
        return client_value
    import uuid

    return uuid.uuid4().hex[:16]


# -- secrets -------------------------------------------------------------------------------


def register_secrets(values: Iterable[str | None]) -> None:
    """Never log these strings (values shorter than 6 characters are ignored)."""
    for value in values:
        if value and len(value) >= 6:
            _secrets.add(value)


def secrets_of(config: Any) -> list[str]:
    """The secret settings of a :class:`~botkit.config.BotConfig`."""
    found: list[str | None] = []
    openai = getattr(config, "openai", None)
    found.append(getattr(openai, "api_key", None))
    slack = getattr(config, "slack", None)
    found += [getattr(slack, name, None) for name in ("bot_token", "signing_secret", "app_token")]
    found.append(getattr(getattr(config, "web", None), "secret", None))
    url = str(getattr(config, "database_url", None) or "")
    password = re.search(r"://[^:/@]*:([^@]+)@", url)
    if password:
        found.append(password.group(1))
    return [value for value in found if value]


def redact(text: str) -> str:
    """``text`` with registered secrets and key-shaped strings replaced."""
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    return _KEY_SHAPES.sub(REDACTED, text)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {k: _redact_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact_value(v) for v in value]
    return value


class RedactingFilter(logging.Filter):
    """A handler filter that redacts secrets from a record before it is formatted."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string still gets logged
            message = str(record.msg)
        record.msg, record.args = redact(message), None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip())
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        fields = getattr(record, FIELDS_ATTR, None)
        if fields:
            setattr(record, FIELDS_ATTR, _redact_value(fields))
        for key, value in list(vars(record).items()):
            if key not in _STANDARD and key != FIELDS_ATTR and isinstance(value, str):
                setattr(record, key, redact(value))
        return True


# -- formatting ----------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, event (the message), fields."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, FIELDS_ATTR, None)
        message = str(record.msg) if fields else record.getMessage()
        data: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "event" if fields else "message": message.split(" ", 1)[0] if fields else message,
        }
        current = request_id()
        if current and not (fields and "request_id" in fields):
            data["request_id"] = current
        if fields:
            data.update({k: v for k, v in fields.items() if v is not None})
        for key, value in vars(record).items():  # extra=... given by other libraries
            if key not in _STANDARD and key != FIELDS_ATTR and key not in data:
                data[key] = value if isinstance(value, (str, int, float, bool)) or value is None else str(value)
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            data["exception"] = record.exc_text
        return json.dumps(data, ensure_ascii=False, default=str)


def turn_line(logger: logging.Logger, fields: Mapping[str, Any]) -> None:
    """Write a turn's structured line (``event: turn``) at INFO."""
    if not logger.isEnabledFor(logging.INFO):
        return
    shown = " ".join(f"{k}={v}" for k, v in fields.items() if v is not None and k != "attempts")
    logger.info("turn %s", shown, extra={FIELDS_ATTR: dict(fields)})


def handler(stream: TextIO | None = None, *, json_lines: bool = True) -> logging.Handler:
    """A stream handler with botkit's formatter and the redacting filter."""
    out = logging.StreamHandler(stream or sys.stderr)
    out.setFormatter(JsonFormatter() if json_lines else logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    out.addFilter(RedactingFilter())
    return out


def configure(config: Any = None, *, level: str | None = None, json_lines: bool | None = None,
              stream: TextIO | None = None) -> logging.Handler:
    """Send the root logger's records through one botkit handler (replacing earlier ones).

    ``level`` and ``json_lines`` default to the bot's ``observability`` settings; the
    bot's secret settings are registered for redaction.
    """
    settings = getattr(config, "observability", None)
    level = level or getattr(settings, "log_level", "info")
    json_lines = getattr(settings, "json_logs", True) if json_lines is None else json_lines
    if config is not None:
        register_secrets(secrets_of(config))
    root = logging.getLogger()
    for existing in list(root.handlers):  # ours from an earlier call, and logging.basicConfig's
        if getattr(existing, "_botkit", False) or type(existing) is logging.StreamHandler:
            root.removeHandler(existing)
    out = handler(stream, json_lines=json_lines)
    out._botkit = True  # type: ignore[attr-defined]
    root.addHandler(out)
    root.setLevel(level.upper())
    return out


def uvicorn_log_config(level: str = "info", *, json_lines: bool = True) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for uvicorn (``log_config=``): its lines as JSON too."""
    formatter = {"()": "botkit.logging.JsonFormatter"} if json_lines else {
        "format": "%(levelname)s %(name)s: %(message)s"}
    handler_config = {"class": "logging.StreamHandler", "formatter": "botkit", "filters": ["redact"],
                      "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"botkit": formatter},
        "filters": {"redact": {"()": "botkit.logging.RedactingFilter"}},
        "handlers": {"botkit": handler_config},
        "loggers": {
            "uvicorn": {"handlers": ["botkit"], "level": level.upper(), "propagate": False},
            "uvicorn.error": {"level": level.upper()},
            "uvicorn.access": {"handlers": ["botkit"], "level": level.upper(), "propagate": False},
        },
        "root": {"handlers": ["botkit"], "level": level.upper()},
    }


__all__ = [
    "REDACTED", "JsonFormatter", "RedactingFilter", "bind_request_id", "configure", "handler", "new_request_id",
    "redact", "register_secrets", "request_id", "reset_request_id", "secrets_of", "turn_line", "uvicorn_log_config",
]
