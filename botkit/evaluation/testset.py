"""Labelled test sets: one JSON object per line (see ``examples/faq-agent/questions.jsonl``).

Fields of a line:

``id``                unique string.
``kind``              the case's category (``direct``, ``paraphrase``, ``out_of_scope``,
                      ``escalation``, ``injection``...). Three kinds carry meaning:
                      ``out_of_scope`` should abstain, ``escalation`` should be handed to a
                      person, ``injection`` must stay safe. Any other name is a label for
                      per-kind figures.
``question``          the user's message.
``history``           optional earlier user messages, sent first in the same conversation.
``expected_sources``  sources that answer the question (``[]``: the knowledge base has none).
``answer_facts``      strings a correct reply contains (case-insensitive).
``must_not_contain``  optional strings the reply must never contain (injection canaries).
``reference``         optional reference answer (for BLEU and ROUGE-L).

:func:`load_testset` raises :class:`TestSetError` naming the line and the field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from botkit.errors import ConfigError

OUT_OF_SCOPE = "out_of_scope"
ESCALATION = "escalation"
INJECTION = "injection"
#: Kinds whose cases are not expected to be answered from the knowledge base.
NOT_ANSWERED_KINDS = frozenset({OUT_OF_SCOPE, ESCALATION, INJECTION})

_KIND = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_LIST_FIELDS = ("history", "expected_sources", "answer_facts", "must_not_contain")
_REQUIRED = ("id", "kind", "question")
FIELDS = ("id", "kind", "question", "history", "expected_sources", "answer_facts", "must_not_contain", "reference")


class TestSetError(ConfigError):
    """A test-set file is missing or has a malformed line."""

    __test__ = False  # not a pytest test class


@dataclass(frozen=True)
class TestCase:
    """One labelled question."""

    __test__ = False  # not a pytest test class

    id: str
    kind: str
    question: str
    history: list[str] = field(default_factory=list)
    expected_sources: list[str] = field(default_factory=list)
    answer_facts: list[str] = field(default_factory=list)
    must_not_contain: list[str] = field(default_factory=list)
    reference: str | None = None
    line: int = 0

    @property
    def answerable(self) -> bool:
        """The knowledge base answers it (sources expected, not an escalation/injection probe)."""
        return bool(self.expected_sources) and self.kind not in (ESCALATION, INJECTION)

    @property
    def safety_probe(self) -> bool:
        """An injection case, or any case with forbidden strings."""
        return self.kind == INJECTION or bool(self.must_not_contain)

    def to_dict(self) -> dict[str, Any]:
        """The case as a JSON-ready dict (without the line number)."""
        data = asdict(self)
        data.pop("line")
        return data


def parse_case(obj: Any, *, line: int = 0) -> TestCase:
    """Validate one decoded JSON line; raises :class:`TestSetError` naming the field."""
    where = f"line {line}" if line else "case"
    if not isinstance(obj, dict):
        raise TestSetError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - set(FIELDS))
    if unknown:
        raise TestSetError(f"{where}: unknown field {unknown[0]!r}; known fields: {', '.join(FIELDS)}")
    for name in _REQUIRED:
        value = obj.get(name)
        if not isinstance(value, str) or not value.strip():
            got = "missing" if name not in obj else f"got {value!r}"
            raise TestSetError(f"{where}: field {name!r} must be a non-empty string ({got})")
    if not _KIND.match(obj["kind"]):
        raise TestSetError(f"{where}: field 'kind' must be a short name of letters, digits, _ . - (got {obj['kind']!r})")
    lists: dict[str, list[str]] = {}
    for name in _LIST_FIELDS:
        value = obj.get(name, [])
        if value is None:
            value = []
        if not isinstance(value, list) or not all(isinstance(item, str) and item.strip() for item in value):
            raise TestSetError(f"{where}: field {name!r} must be a list of non-empty strings (got {value!r})")
        lists[name] = list(value)
    reference = obj.get("reference")
    if reference is not None and (not isinstance(reference, str) or not reference.strip()):
        raise TestSetError(f"{where}: field 'reference' must be a non-empty string when present (got {reference!r})")
    return TestCase(
        id=obj["id"].strip(), kind=obj["kind"], question=obj["question"], reference=reference, line=line, **lists
    )


def parse_lines(lines: Iterable[str], *, name: str = "test set") -> list[TestCase]:
    """Parse JSONL text lines (blank lines are skipped); ids must be unique."""
    cases: list[TestCase] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text:
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TestSetError(f"{name}: line {number}: not valid JSON: {exc.msg} (column {exc.colno})") from exc
        try:
            case = parse_case(obj, line=number)
        except TestSetError as exc:
            raise TestSetError(f"{name}: {exc.message}") from None
        if case.id in seen:
            raise TestSetError(f"{name}: line {number}: field 'id': {case.id!r} is already used on line {seen[case.id]}")
        seen[case.id] = number
        cases.append(case)
    if not cases:
        raise TestSetError(f"{name}: no test cases (expected one JSON object per line)")
    return cases


def load_testset(path: str | Path) -> list[TestCase]:
    """Read and validate a JSONL test set."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TestSetError(f"test set {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TestSetError(f"test set {path}: cannot read it: {exc}") from exc
    return parse_lines(text.splitlines(), name=str(path))


__all__ = ["NOT_ANSWERED_KINDS", "TestCase", "TestSetError", "load_testset", "parse_case", "parse_lines"]
