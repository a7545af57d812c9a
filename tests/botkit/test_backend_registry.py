"""The backend registry: entry points, built-ins, third-party kinds, config errors."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

import pytest

from botkit.backends import registry
from botkit.backends.base import Backend, Completion, Prompt, Usage
from botkit.backends.extractive import ExtractiveBackend
from botkit.backends.scripted import ScriptedBackend
from botkit.config import BotConfig
from botkit.errors import ConfigError

BUILTINS = {"openai", "transformers", "extractive", "langchain", "scripted"}


class Custom(Backend):
    kind = "custom"

    async def generate(self, prompt: Prompt, *, timeout: float) -> Completion:
        return Completion("custom", Usage(), self.spec)


def test_builtins_are_registered_as_entry_points() -> None:
    found = {ep.name: ep.value for ep in entry_points(group=registry.GROUP)}
    assert BUILTINS <= set(found), "re-run: pip install -e . --no-deps"
    for kind in BUILTINS:
        assert found[kind] == registry.BUILTIN_BACKENDS[kind]
        assert registry.backend_class(kind).kind == kind


def test_builtins_load_without_distribution_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "entry_points", lambda group: [])
    assert set(registry.known_kinds()) >= BUILTINS
    assert registry.backend_class("extractive") is ExtractiveBackend


def test_create_backend_parses_specs() -> None:
    config = BotConfig()
    assert isinstance(registry.create_backend("extractive", config), ExtractiveBackend)
    scripted = registry.create_backend("scripted:demo", config)
    assert isinstance(scripted, ScriptedBackend) and scripted.spec == "scripted:demo"
    assert registry.parse_spec("langchain:pkg.mod:factory") == ("langchain", "pkg.mod:factory")
    assert registry.parse_spec(" transformers:/m/x ") == ("transformers", "/m/x")


def test_unknown_kind_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        registry.create_backend("gpt5:turbo", BotConfig())
    message = str(info.value)
    assert "unknown backend 'gpt5'" in message
    for kind in BUILTINS:
        assert kind in message


def test_third_party_registration() -> None:
    registry.register_backend("custom", Custom)
    try:
        backend = registry.create_backend("custom:model-x", BotConfig())
        assert isinstance(backend, Custom) and backend.spec == "custom:model-x"
        assert "custom" in registry.known_kinds()
    finally:
        registry.unregister_backend("custom")
    with pytest.raises(ConfigError):
        registry.create_backend("custom", BotConfig())


def test_register_rejects_non_backends() -> None:
    with pytest.raises(TypeError):
        registry.register_backend("bad", object)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        registry.register_backend("a:b", Custom)


def test_openai_without_key_or_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        registry.create_backend("openai:gpt-4o-mini", BotConfig())
    assert str(info.value) == "the openai backend has no API key: set OPENAI_API_KEY or openai.api_key in bot.yaml"


def test_openai_takes_its_settings_from_config() -> None:
    config = BotConfig.model_validate({"openai": {"base_url": "http://127.0.0.1:9/v1", "timeout_s": 7}})
    backend = registry.create_backend("openai:llama3", config)
    assert backend.options is config.openai
    assert backend.timeout_s == 7
    with pytest.raises(ConfigError, match="model name"):
        registry.create_backend("openai", config)


def test_transformers_missing_model_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="transformers:/path/to/model"):
        registry.create_backend(f"transformers:{tmp_path / 'nope'}", BotConfig())
    with pytest.raises(ConfigError, match="config.json"):
        registry.create_backend(f"transformers:{tmp_path}", BotConfig())
    with pytest.raises(ConfigError, match="needs a model"):
        registry.create_backend("transformers", BotConfig())
