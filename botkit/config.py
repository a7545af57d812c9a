"""Bot configuration: the one place that reads ``bot.yaml`` and the environment.

A bot is a directory holding ``bot.yaml`` and ``knowledge/``. Every key of ``bot.yaml``
can be overridden by an environment variable ``BOTKIT_<KEY>``, nested keys joined with
``__`` (``BOTKIT_DATABASE_URL``, ``BOTKIT_KNOWLEDGE__CHROMA_URL``). Values that start with
``[`` or ``{`` are parsed as JSON (``BOTKIT_BACKENDS='["openai:gpt-4o-mini", "extractive"]'``);
others are given to pydantic as strings and converted to the key's type.

No other module reads ``os.environ``: callers pass the mapping in (tests pass a dict).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from botkit.errors import ConfigError
from knowledge.settings import KnowledgeSettings

CONFIG_FILE = "bot.yaml"
ENV_PREFIX = "BOTKIT_"
# BOTKIT_* variables that are not config keys: read by the CLI itself (BOTKIT_BOT), or the
# machine-wide cache folder of exported models (BOTKIT_CACHE_DIR, knowledge.onnx_encoder).
_RESERVED_ENV = {"BOT", "CACHE_DIR"}
# BOTKIT_TEST_* and BOTKIT_FAULTS_* variables configure the test suite, not a bot.
_RESERVED_PREFIXES = ("TEST_", "FAULTS_")
# Slack's usual variables, used when bot.yaml leaves the key unset.
_SLACK_ENV = {"bot_token": "SLACK_BOT_TOKEN", "signing_secret": "SLACK_SIGNING_SECRET", "app_token": "SLACK_APP_TOKEN"}


class OpenAISettings(BaseModel):
    """The ``openai:`` section: credentials and transport for the OpenAI backend.

    ``api_key`` and ``base_url`` fall back to the official client's ``OPENAI_API_KEY`` and
    ``OPENAI_BASE_URL`` variables, so vLLM, Ollama or TGI servers work by URL.
    """

    model_config = ConfigDict(extra="forbid")

    api_key: str | None = Field(None, description="API key (default: $OPENAI_API_KEY).")
    base_url: str | None = Field(None, description="API base URL for OpenAI-compatible servers such as vLLM (default: $OPENAI_BASE_URL).")
    organization: str | None = Field(None, description="OpenAI organization id, if any.")
    timeout_s: float = Field(30.0, gt=0, description="Deadline of one backend call.")
    max_retries: int = Field(2, ge=0, le=10, description="Retries on 429, 5xx and timeouts (Retry-After honoured).")
    max_tokens: int = Field(512, ge=1, le=32768, description="Cap on tokens generated per reply.")
    temperature: float = Field(0.2, ge=0.0, le=2.0, description="Sampling temperature.")


class TransformersSettings(BaseModel):
    """The ``transformers:`` section: generation settings for local models."""

    model_config = ConfigDict(extra="forbid")

    device: str | None = Field(None, description="cuda, cpu, mps; default: cuda when present, else cpu.")
    max_new_tokens: int = Field(256, ge=1, le=8192, description="Cap on tokens generated per reply.")
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="0 means greedy decoding.")
    timeout_s: float = Field(120.0, gt=0, description="Deadline of one local generation.")


class LimitsSettings(BaseModel):
    """Size limits applied to every input."""

    model_config = ConfigDict(extra="forbid")

    max_message_chars: int = Field(4000, ge=1, description="Longest user message accepted.")
    history_turns: int = Field(12, ge=0, le=200, description="Messages of history loaded per turn.")
    turn_timeout_s: float = Field(60.0, gt=0, description="Deadline of a whole turn across fallbacks.")
    lock_timeout_s: float = Field(30.0, gt=0, description="Longest wait for a conversation's turn lock.")
    breaker_failures: int = Field(3, ge=1, description="Consecutive failures of a backend that open its circuit.")
    breaker_cooldown_s: float = Field(
        30.0, gt=0, description="How long an open circuit skips its backend before one trial call is let through."
    )


class EscalationSettings(BaseModel):
    """When a conversation is handed to a human."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Hand conversations to humans at all.")
    max_abstentions: int = Field(2, ge=1, description="Consecutive unanswered questions before handoff.")
    classifier: str | None = Field(None, description="Folder of a trained escalation classifier (botkit train-classifier), relative to the bot directory.")
    classifier_threshold: float = Field(0.5, ge=0.0, le=1.0, description="Escalate when the classifier's probability reaches this.")
    message: str = Field(
        "I'm handing this conversation to a member of our support team. "
        "A person will reply here as soon as possible; you don't need to repeat your question.",
        description="What the bot says when it hands a conversation to a person.",
    )


MAX_SUGGESTIONS = 6
MAX_SUGGESTION_CHARS = 120


class WebSettings(BaseModel):
    """The ``web:`` section: the HTTP API and the embeddable widget."""

    model_config = ConfigDict(extra="forbid")

    public_key: str | None = Field(None, description="Public bot key used by the widget (made by botkit init).")
    allowed_origins: list[str] = Field(default_factory=list, description="Origins allowed to use the public key.")
    title: str = Field("Support", description="Widget title.")
    greeting: str = Field("Hi! Ask me anything about our product.", description="First message the widget and the terminal chat show.")
    primary_color: str = Field(
        "#2563eb", pattern=r"^#[0-9a-fA-F]{3,8}$", description="Widget accent colour (CSS hex)."
    )
    position: Literal["bottom-right", "bottom-left"] = Field("bottom-right", description="Widget launcher corner.")
    suggestions: list[str] = Field(
        default_factory=list, max_length=MAX_SUGGESTIONS,
        description=f"Questions the widget offers under its greeting until the visitor's first message (at most "
        f"{MAX_SUGGESTIONS}, each up to {MAX_SUGGESTION_CHARS} characters); a click sends one. Asked verbatim, they "
        "reuse their query vectors (knowledge.query_cache_size).",
    )
    secret: str | None = Field(
        None,
        min_length=16,
        description="Server secret signing conversation tokens (default: <data_dir>/secret.key, created on "
        "first use). Set it when several machines serve one bot.",
    )
    rate_limit_per_minute: int = Field(120, ge=0, description="Requests per minute per client IP (0: no limit).")
    conversation_rate_limit_per_minute: int = Field(
        20, ge=0, description="Messages per minute per conversation (0: no limit)."
    )
    max_body_bytes: int = Field(65536, ge=1024, description="Largest request body accepted (413 beyond).")

    @field_validator("suggestions")
    @classmethod
    def _suggestions(cls, value: list[str]) -> list[str]:
        cleaned = [" ".join(text.split()) for text in value]
        for number, text in enumerate(cleaned, start=1):
            if not text:
                raise ValueError(f"suggestion {number} is empty; remove it or write the question")
            if len(text) > MAX_SUGGESTION_CHARS:
                raise ValueError(f"suggestion {number} is {len(text)} characters long; the limit is "
                                 f"{MAX_SUGGESTION_CHARS}: offer a short question")
        return cleaned


class SlackSettings(BaseModel):
    """The ``slack:`` section: the Slack connector (``connectors.slack``).

    Tokens and the signing secret fall back to Slack's usual ``SLACK_BOT_TOKEN``,
    ``SLACK_SIGNING_SECRET`` and ``SLACK_APP_TOKEN`` variables; keep them out of bot.yaml.
    """

    model_config = ConfigDict(extra="forbid")

    bot_token: str | None = Field(None, description="Bot User OAuth Token, xoxb-... (default: $SLACK_BOT_TOKEN).")
    signing_secret: str | None = Field(
        None, description="Signing secret that verifies requests from Slack (default: $SLACK_SIGNING_SECRET)."
    )
    app_token: str | None = Field(
        None, description="App-level token, xapp-..., for `botkit slack --socket` (default: $SLACK_APP_TOKEN)."
    )
    api_url: str = Field(
        "https://slack.com/api/", pattern=r"^https?://",
        description="Slack Web API base URL (tests and staging point it at another server).",
    )
    dm_idle_minutes: float = Field(
        30.0, gt=0, description="A direct message after this many idle minutes starts a new conversation."
    )
    support_channel: str | None = Field(
        None, description="Channel ID where handoffs are posted with a link to the thread (e.g. C0123456789)."
    )
    max_concurrent_answers: int = Field(
        8, ge=1, description="Answers generated at once per worker process; further events wait in a queue "
        "(claimed, so answered exactly once), so that acks stay fast under load. Lower it for answers that "
        "use the CPU (local models), raise it for remote APIs.",
    )

    @field_validator("api_url")
    @classmethod
    def _trailing_slash(cls, value: str) -> str:
        return value if value.endswith("/") else value + "/"


class TokenPrice(BaseModel):
    """Price of one backend's tokens, in your currency per 1,000 tokens."""

    model_config = ConfigDict(extra="forbid")

    prompt: float = Field(0.0, ge=0, description="Price per 1,000 prompt tokens.")
    completion: float = Field(0.0, ge=0, description="Price per 1,000 completion tokens.")

    def __repr__(self) -> str:
        return f"{{prompt: {self.prompt}, completion: {self.completion}}}"


def _default_prices() -> dict[str, TokenPrice]:
    # OpenAI list prices (USD) when this table was written; local backends cost 0.
    return {"gpt-4o-mini": TokenPrice(prompt=0.00015, completion=0.0006),
            "gpt-4o": TokenPrice(prompt=0.0025, completion=0.01)}


class ConsoleSettings(BaseModel):
    """The ``console:`` section: the agent console (``/console``) and analytics."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Serve the agent console and analytics at /console with `botkit serve`.")
    session_hours: float = Field(12.0, gt=0, le=24 * 30, description="How long an agent stays signed in.")
    login_attempts_per_minute: int = Field(10, ge=1, description="Sign-in attempts per minute per client IP.")
    prices: dict[str, TokenPrice] = Field(
        default_factory=_default_prices,
        description="Token prices per backend (a backend string such as openai:gpt-4o-mini, or its model name) "
        "for the estimated cost in analytics; unlisted backends cost 0.",
    )
    gap_distance: float = Field(
        0.7, gt=0, lt=2, description="Knowledge-gap finder: average cosine distance under which questions join one cluster "
        "(lower: more, tighter clusters)."
    )


class BusinessHoursSettings(BaseModel):
    """The ``business_hours:`` section: when people answer handed-off conversations."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="Tell visitors, outside these hours, when a person will answer.")
    timezone: str = Field("UTC", description="IANA time zone of the hours below, e.g. Europe/Paris.")
    hours: dict[str, list[str]] = Field(
        default_factory=lambda: {day: ["09:00-17:00"] for day in ("mon", "tue", "wed", "thu", "fri")},
        description="Opening hours per weekday (mon..sun), each a list of HH:MM-HH:MM ranges; missing days are closed.",
    )
    holidays: list[str] = Field(default_factory=list, description="Closed dates, YYYY-MM-DD.")
    message: str = Field(
        "Our support team is offline right now. A person will reply here {next_open}. "
        "If you'd rather hear from us by email, leave your email address in this chat.",
        description="What a handoff says outside business hours; {next_open} becomes e.g. 'on Monday at 09:00 (UTC)'.",
    )

    @field_validator("hours")
    @classmethod
    def _check_hours(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for day, ranges in value.items():
            if day not in ("mon", "tue", "wed", "thu", "fri", "sat", "sun"):
                raise ValueError(f"unknown weekday {day!r}; use mon, tue, wed, thu, fri, sat, sun")
            for item in ranges:
                if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-4]):[0-5]\d", item) or item[:5] >= item[6:]:
                    raise ValueError(f"{day}: {item!r} is not a range like 09:00-17:00")
        return value


class WebhookSettings(BaseModel):
    """The ``webhooks:`` section: delivery of signed outgoing webhooks (endpoints: `botkit webhooks add`)."""

    model_config = ConfigDict(extra="forbid")

    deliver: bool = Field(True, description="Run the delivery worker inside `botkit serve`.")
    timeout_s: float = Field(10.0, gt=0, le=120, description="Deadline of one delivery request.")
    max_attempts: int = Field(10, ge=1, le=50, description="Attempts before a delivery is given up.")
    backoff_s: float = Field(5.0, gt=0, description="Wait before the first retry; doubled after each failure.")
    max_backoff_s: float = Field(3600.0, gt=0, description="Longest wait between two attempts.")
    poll_interval_s: float = Field(2.0, gt=0, le=300, description="How often the worker looks for due deliveries.")


class ObservabilitySettings(BaseModel):
    """The ``observability:`` section: logs, metrics and traces (see botkit.logging, botkit.metrics)."""

    model_config = ConfigDict(extra="forbid")

    json_logs: bool = Field(True, description="`botkit serve` writes one JSON object per log line (else plain text).")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Log level of `botkit serve` (info: one line per turn and per request)."
    )
    metrics: bool = Field(True, description="Serve Prometheus metrics at /metrics (needs the server extra).")
    otel: bool = Field(False, description="OpenTelemetry spans per turn (pip install 'botkit[otel]'; configure the SDK).")


class BotConfig(BaseModel):
    """The whole bot configuration (``bot.yaml``)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("botkit", min_length=1, max_length=100, description="The bot's name, as shown to users and APIs.")
    persona: str = Field(
        "You are a friendly, concise customer-support assistant.",
        description="Who the bot is; the first line of every prompt.",
    )
    data_dir: str = Field("data", description="Folder for state (database, index), relative to the bot directory.")
    database_url: str | None = Field(None, description="SQLAlchemy URL (default: SQLite file <data_dir>/botkit.db).")
    database_pool_size: int = Field(
        10, ge=1, le=1000,
        description="PostgreSQL: most connections per worker process in each query pool (the store's; API keys and "
        "the console have one each, mostly idle). Size the server as in deploy/README.md.",
    )
    database_max_turn_connections: int = Field(
        50, ge=1, le=10000,
        description="PostgreSQL: most connections per worker process holding turn locks, i.e. turns in flight at "
        "once (more wait for a free one, within limits.lock_timeout_s).",
    )
    backends: list[str] = Field(default_factory=lambda: ["extractive"], min_length=1, description="Fallback chain of backends.")
    knowledge: KnowledgeSettings = Field(default_factory=KnowledgeSettings)
    openai: OpenAISettings = Field(default_factory=OpenAISettings)
    transformers: TransformersSettings = Field(default_factory=TransformersSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    escalation: EscalationSettings = Field(default_factory=EscalationSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    slack: SlackSettings = Field(default_factory=SlackSettings)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)
    business_hours: BusinessHoursSettings = Field(default_factory=BusinessHoursSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    observability: ObservabilitySettings = Field(default_factory=ObservabilitySettings)

    # Set by load_config, not by users.
    root: Path = Field(default_factory=Path.cwd, exclude=True)

    @property
    def data_path(self) -> Path:
        """Absolute folder for the bot's state."""
        return _resolve(self.root, self.data_dir)

    @property
    def knowledge_path(self) -> Path:
        """Absolute knowledge folder."""
        return _resolve(self.root, self.knowledge.path)

    @property
    def chroma_path(self) -> Path:
        """Absolute embedded-Chroma folder (unused when ``knowledge.chroma_url`` is set)."""
        if self.knowledge.chroma_path:
            return _resolve(self.root, self.knowledge.chroma_path)
        return self.data_path / "chroma"

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file under the data folder."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_path / 'botkit.db'}"


def _resolve(root: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (root / path)


def load_config(bot_dir: str | Path = ".", environ: Mapping[str, str] | None = None) -> BotConfig:
    """Read ``bot_dir/bot.yaml`` with environment overrides and validate it.

    ``environ`` defaults to ``os.environ``. A missing ``bot.yaml`` is allowed (all
    defaults) as long as the directory exists. Raises :class:`ConfigError` naming the file
    or variable and the key.
    """
    env = os.environ if environ is None else environ
    root = Path(bot_dir).expanduser().resolve()
    if not root.is_dir():
        raise ConfigError(f"bot directory {root} does not exist", hint="create one with `botkit init DIR`")
    path = root / CONFIG_FILE
    data: dict[str, Any] = {}
    if path.exists():
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(loaded).__name__}")
        data = loaded
    origins: dict[tuple[str, ...], str] = {}
    _apply_env(data, env, origins)
    _apply_standard_env(data, env)
    try:
        config = BotConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path, origins)) from exc
    return config.model_copy(update={"root": root})


def _apply_env(data: dict[str, Any], env: Mapping[str, str], origins: dict[tuple[str, ...], str]) -> None:
    for name, raw in sorted(env.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        key = name[len(ENV_PREFIX):]
        if not key or key in _RESERVED_ENV or key.startswith(_RESERVED_PREFIXES):
            continue
        parts = tuple(part.lower() for part in key.split("__"))
        value: Any = raw
        if raw.strip().startswith(("[", "{")):
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"environment variable {name}: not valid JSON: {exc.msg}") from exc
        target = data
        for part in parts[:-1]:
            nested = target.get(part)
            if not isinstance(nested, dict):
                nested = {}
                target[part] = nested
            target = nested
        target[parts[-1]] = value
        origins[parts] = name


def _apply_standard_env(data: dict[str, Any], env: Mapping[str, str]) -> None:
    """Honour the official clients' variables when bot.yaml leaves the key unset."""
    openai = data.get("openai")
    if openai is None:
        openai = data["openai"] = {}
    if isinstance(openai, dict):
        if not openai.get("api_key") and env.get("OPENAI_API_KEY"):
            openai["api_key"] = env["OPENAI_API_KEY"]
        if not openai.get("base_url") and env.get("OPENAI_BASE_URL"):
            openai["base_url"] = env["OPENAI_BASE_URL"]
    slack = data.get("slack")
    if slack is None and any(env.get(var) for var in _SLACK_ENV.values()):
        slack = data["slack"] = {}
    if isinstance(slack, dict):
        for key, var in _SLACK_ENV.items():
            if not slack.get(key) and env.get(var):
                slack[key] = env[var]


def _describe(exc: ValidationError, path: Path, origins: dict[tuple[str, ...], str]) -> str:
    lines = []
    for error in exc.errors():
        loc = tuple(str(part) for part in error["loc"])
        key = ".".join(loc) or "(top level)"
        where = next((var for prefix, var in origins.items() if loc[: len(prefix)] == prefix), None)
        origin = f"environment variable {where}" if where else str(path)
        if error["type"] == "extra_forbidden":
            message = "unknown key"
            allowed = _allowed_keys(loc[:-1])
            if allowed:
                message += f"; known keys here: {', '.join(allowed)}"
        else:
            message = error["msg"]
            if "input" in error and not isinstance(error["input"], (dict, list)):
                message += f" (got {error['input']!r})"
        lines.append(f"{origin}: {key}: {message}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def _allowed_keys(loc: tuple[str, ...]) -> list[str]:
    model: type[BaseModel] = BotConfig
    for part in loc:
        field = model.model_fields.get(part)
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return sorted(name for name in model.model_fields if name != "root")
