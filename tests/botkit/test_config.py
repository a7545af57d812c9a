"""bot.yaml loading, environment overrides and configuration errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from botkit.config import BotConfig, load_config
from botkit.errors import ConfigError


def write(dir_: Path, text: str) -> Path:
    (dir_ / "bot.yaml").write_text(text, encoding="utf-8")
    return dir_


def test_defaults_without_bot_yaml(tmp_path: Path) -> None:
    config = load_config(tmp_path, environ={})
    assert config.backends == ["extractive"]
    assert config.root == tmp_path.resolve()
    assert config.data_path == tmp_path.resolve() / "data"
    assert config.resolved_database_url == f"sqlite:///{tmp_path.resolve() / 'data' / 'botkit.db'}"
    assert config.chroma_path == tmp_path.resolve() / "data" / "chroma"
    assert config.knowledge_path == tmp_path.resolve() / "knowledge"


def test_values_from_yaml(tmp_path: Path) -> None:
    write(tmp_path, "name: Acme\nknowledge:\n  chunk_size: 500\n  path: docs\n")
    config = load_config(tmp_path, environ={})
    assert config.name == "Acme"
    assert config.knowledge.chunk_size == 500
    assert config.knowledge_path == tmp_path.resolve() / "docs"


def test_env_overrides_top_level_and_nested(tmp_path: Path) -> None:
    write(tmp_path, "name: Acme\nknowledge:\n  chunk_size: 500\n")
    env = {
        "BOTKIT_DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/test",
        "BOTKIT_KNOWLEDGE__CHROMA_URL": "http://127.0.0.1:8001",
        "BOTKIT_KNOWLEDGE__CHUNK_SIZE": "700",
        "BOTKIT_BACKENDS": '["openai:gpt-4o-mini", "extractive"]',
        "BOTKIT_BOT": "ignored: read by the CLI",
        "BOTKIT_CACHE_DIR": "ignored: where exported query models are cached",
        "BOTKIT_TEST_POSTGRES_URL": "ignored: read by the test suite",
        "UNRELATED": "x",
    }
    config = load_config(tmp_path, environ=env)
    assert config.database_url == "postgresql://postgres@127.0.0.1:5432/test"
    assert config.knowledge.chroma_url == "http://127.0.0.1:8001"
    assert config.knowledge.chunk_size == 700
    assert config.backends == ["openai:gpt-4o-mini", "extractive"]
    assert config.name == "Acme"


def test_openai_standard_variables(tmp_path: Path) -> None:
    config = load_config(tmp_path, environ={"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"})
    assert config.openai.api_key == "sk-test"
    assert config.openai.base_url == "http://127.0.0.1:9/v1"
    write(tmp_path, "openai:\n  api_key: from-yaml\n")
    assert load_config(tmp_path, environ={"OPENAI_API_KEY": "sk-env"}).openai.api_key == "from-yaml"


def test_unknown_key_names_key_and_file(tmp_path: Path) -> None:
    write(tmp_path, "knowledge:\n  chunk_sise: 500\n")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, environ={})
    message = str(info.value)
    assert "knowledge.chunk_sise" in message
    assert "unknown key" in message
    assert str(tmp_path / "bot.yaml") in message
    assert "chunk_size" in message  # the known keys are listed


def test_wrong_type_names_key_and_value(tmp_path: Path) -> None:
    write(tmp_path, "knowledge:\n  chunk_size: lots\n")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, environ={})
    assert "knowledge.chunk_size" in str(info.value)
    assert "'lots'" in str(info.value)


def test_bad_env_value_names_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, environ={"BOTKIT_KNOWLEDGE__TOP_K": "many"})
    assert "BOTKIT_KNOWLEDGE__TOP_K" in str(info.value)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, environ={"BOTKIT_BACKENDS": "[not json"})
    assert "BOTKIT_BACKENDS" in str(info.value)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, environ={"BOTKIT_NO_SUCH_KEY": "1"})
    assert "no_such_key" in str(info.value) and "BOTKIT_NO_SUCH_KEY" in str(info.value)


def test_invalid_yaml_and_shapes(tmp_path: Path) -> None:
    write(tmp_path, "name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path, environ={})
    write(tmp_path, "- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(tmp_path, environ={})
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing", environ={})


def test_empty_backends_rejected(tmp_path: Path) -> None:
    write(tmp_path, "backends: []\n")
    with pytest.raises(ConfigError, match="backends"):
        load_config(tmp_path, environ={})


def test_every_key_documented() -> None:
    """Every config key has a place in the README's configuration reference."""
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")

    def keys(model: type, prefix: str = "") -> list[str]:
        out = []
        for name, field in model.model_fields.items():
            if name == "root":
                continue
            annotation = field.annotation
            if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
                out += keys(annotation, f"{prefix}{name}.")
            else:
                out.append(prefix + name)
        return out

    missing = [key for key in keys(BotConfig) if f"`{key}`" not in readme]
    assert not missing, f"README.md does not document: {missing}"


def test_widget_suggestions_are_normalised_and_checked(tmp_path: Path) -> None:
    write(tmp_path, "web:\n  suggestions:\n    - '  How do I   reset my password? '\n    - When are you open?\n")
    assert load_config(tmp_path, environ={}).web.suggestions == ["How do I reset my password?", "When are you open?"]
    for body, expected in (("['  ']", "suggestion 1 is empty"), (f"['ok', '{'x' * 121}']", "suggestion 2 is 121"),
                           (str([f"q{i}" for i in range(7)]), "at most 6")):
        write(tmp_path, f"web:\n  suggestions: {body}\n")
        with pytest.raises(ConfigError) as info:
            load_config(tmp_path, environ={})
        assert "web.suggestions" in str(info.value) and expected in str(info.value)
