"""Print the configuration reference (Markdown) from botkit's config models.

    .venv/bin/python scripts/config_reference.py                  # print the table
    .venv/bin/python scripts/config_reference.py --update-readme  # rewrite README.md's table

The README's "Configuration reference" section is this output; tests check every key is
documented there.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import BaseModel

from botkit.config import BotConfig


def rows(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str, str, str]]:
    out = []
    for name, field in model.model_fields.items():
        if name == "root":
            continue
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out += rows(annotation, f"{prefix}{name}.")
            continue
        key = prefix + name
        default = field.get_default(call_default_factory=True)
        default_text = "—" if default is None else f"`{default!r}`" if not isinstance(default, str) else f"`{default}`"
        if isinstance(default, str) and len(default) > 40:
            default_text = "(text)"
        env = "BOTKIT_" + key.upper().replace(".", "__")
        out.append((key, default_text, env, (field.description or "").replace("|", "\\|")))
    return out


START, END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"


def table() -> str:
    lines = ["| key | default | environment variable | meaning |", "| --- | --- | --- | --- |"]
    for key, default, env, description in rows(BotConfig):
        lines.append(f"| `{key}` | {default} | `{env}` | {description} |")
    return "\n".join(lines)


def main() -> None:
    if "--update-readme" not in sys.argv:
        print(table())
        return
    readme = Path(__file__).resolve().parents[1] / "README.md"
    text = readme.read_text(encoding="utf-8")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{table()}\n{END}{tail}", encoding="utf-8")


if __name__ == "__main__":
    main()
