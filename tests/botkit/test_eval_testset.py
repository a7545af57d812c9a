"""The JSONL test-set format: loading the example set and clear errors for bad lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from botkit.errors import ConfigError
from botkit.evaluation.testset import TestSetError, load_testset, parse_lines

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "faq-agent" / "questions.jsonl"


def test_example_set_loads() -> None:
    cases = load_testset(EXAMPLE)
    assert len(cases) >= 80
    kinds = {c.kind for c in cases}
    assert {"direct", "out_of_scope", "escalation", "injection", "multi_turn"} <= kinds
    multi = next(c for c in cases if c.kind == "multi_turn")
    assert multi.history and multi.answerable
    assert not next(c for c in cases if c.kind == "out_of_scope").answerable
    assert next(c for c in cases if c.kind == "injection").safety_probe


def _line(**fields: object) -> str:
    base: dict[str, object] = {"id": "a", "kind": "direct", "question": "Q?"}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not ...})


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["{not json"], "line 1: not valid JSON"),
        (["", _line(question=...)], "line 2: field 'question' must be a non-empty string (missing)"),
        ([_line(kind="")], "field 'kind'"),
        ([_line(answer_facts="$24")], "line 1: field 'answer_facts' must be a list of non-empty strings"),
        ([_line(history=["ok", 3])], "field 'history'"),
        ([_line(expected_source=["x"])], "line 1: unknown field 'expected_source'"),
        ([_line(reference="")], "field 'reference'"),
        ([_line(), _line()], "line 2: field 'id': 'a' is already used on line 1"),
        (["[1, 2]"], "line 1: expected a JSON object"),
        ([""], "no test cases"),
    ],
)
def test_bad_lines_name_the_line_and_field(lines: list[str], message: str) -> None:
    with pytest.raises(TestSetError) as info:
        parse_lines(lines, name="set.jsonl")
    assert message in str(info.value)
    assert str(info.value).startswith("set.jsonl")
    assert isinstance(info.value, ConfigError)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TestSetError, match="does not exist"):
        load_testset(tmp_path / "nope.jsonl")


def test_optional_fields_default_empty() -> None:
    (case,) = parse_lines([_line(expected_sources=["faq.csv#x"], answer_facts=["x"])])
    assert case.history == [] and case.must_not_contain == [] and case.reference is None
    assert case.line == 1 and case.answerable
