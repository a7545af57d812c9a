"""Unit tests of the web connector's security primitives (no app, no bot)."""

from __future__ import annotations

import pytest

from botkit.config import load_config
from connectors.web.security import (
    ConversationTokens,
    OriginPolicy,
    RateLimiter,
    load_secret,
    normalize_origin,
    public_key,
)


def test_conversation_token_is_bound_to_its_conversation() -> None:
    tokens = ConversationTokens(b"s" * 32)
    token = tokens.issue("conv-a")
    assert token.startswith("ct_") and len(token) > 40
    assert tokens.verify("conv-a", token)
    assert not tokens.verify("conv-b", token)
    assert not tokens.verify("conv-a", token[:-1] + ("A" if token[-1] != "A" else "B"))
    assert not tokens.verify("conv-a", "")
    assert not tokens.verify("conv-a", "ct_é")  # non-ASCII input does not crash the comparison


def test_tokens_depend_on_the_secret() -> None:
    assert ConversationTokens(b"a" * 32).issue("c") != ConversationTokens(b"b" * 32).issue("c")


def test_secret_file_is_created_once_and_private(tmp_path) -> None:
    config = load_config(tmp_path, environ={})
    first = load_secret(config)
    assert load_secret(config) == first and len(first) >= 32
    path = config.data_path / "secret.key"
    assert path.stat().st_mode & 0o077 == 0
    configured = load_config(tmp_path, environ={"BOTKIT_WEB__SECRET": "x" * 20})
    assert load_secret(configured) == b"x" * 20


def test_public_key_defaults_to_a_derived_one(tmp_path) -> None:
    config = load_config(tmp_path, environ={})
    derived = public_key(config, b"k" * 32)
    assert derived.startswith("pk_") and derived == public_key(config, b"k" * 32)
    assert public_key(config, b"j" * 32) != derived
    configured = load_config(tmp_path, environ={"BOTKIT_WEB__PUBLIC_KEY": "pk_fixed"})
    assert public_key(configured, b"k" * 32) == "pk_fixed"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("HTTPS://Example.COM", "https://example.com"),
        ("https://example.com:443", "https://example.com"),
        ("http://127.0.0.1:8000/", "http://127.0.0.1:8000"),
    ],
)
def test_normalize_origin(value: str, expected: str) -> None:
    assert normalize_origin(value) == expected


def test_origin_policy() -> None:
    policy = OriginPolicy(["https://shop.example.com"])
    own = "http://127.0.0.1:8000"
    assert policy.allows(None, own)  # curl, server-to-server
    assert policy.allows("http://127.0.0.1:8000", own)  # the server's own pages
    assert policy.allows("https://shop.example.com", own)
    assert not policy.allows("https://evil.example", own)
    assert not policy.allows("null", own)
    assert OriginPolicy(["*"]).allows("https://anything.example", own)


def test_rate_limiter_token_bucket() -> None:
    limiter = RateLimiter(3)
    assert [limiter.hit("ip", now=0.0) for _ in range(3)] == [None, None, None]
    wait = limiter.hit("ip", now=0.0)
    assert wait is not None and 19 < wait <= 20  # one token per 20 s
    assert RateLimiter.retry_after(wait) == "20"
    assert limiter.hit("other", now=0.0) is None  # keys are independent
    assert limiter.hit("ip", now=21.0) is None  # refilled
    assert RateLimiter(0).hit("ip") is None  # 0 disables


def test_rate_limiter_memory_is_bounded() -> None:
    limiter = RateLimiter(10, max_keys=100)
    for i in range(1000):
        limiter.hit(f"ip-{i}", now=0.0)
    assert len(limiter._buckets) == 100
