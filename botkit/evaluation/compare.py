"""What changed between two evaluation runs (``botkit eval --compare A.json B.json``).

Both files are ``botkit eval --json`` documents. The comparison lists each figure in
either run with its delta (B − A), per-kind pass rates, the cases that went from pass to
fail and back, and the cases only one run has.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botkit.errors import ConfigError
from botkit.evaluation.metrics import GATE_METRICS, LOWER_IS_BETTER

#: Figures compared, in display order.
COMPARED = (*GATE_METRICS, "false_handoff_rate", "errors", "latency_p50_ms", "latency_p95_ms",
            "prompt_tokens", "completion_tokens")


@dataclass(frozen=True)
class Delta:
    """One figure in both runs."""

    metric: str
    before: float | None
    after: float | None

    @property
    def change(self) -> float | None:
        """``after − before`` (``None`` when either is missing)."""
        if self.before is None or self.after is None:
            return None
        return self.after - self.before

    @property
    def better(self) -> bool | None:
        """Whether the change is an improvement (``None``: no change or not comparable)."""
        change = self.change
        if not change:
            return None
        return change < 0 if self.metric in LOWER_IS_BETTER else change > 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"metric": self.metric, "before": self.before, "after": self.after, "change": self.change, "better": self.better}


@dataclass
class Comparison:
    """The differences between run A (before) and run B (after)."""

    deltas: list[Delta]
    per_kind: dict[str, Delta]
    pass_to_fail: list[dict[str, Any]] = field(default_factory=list)
    fail_to_pass: list[dict[str, Any]] = field(default_factory=list)
    only_before: list[str] = field(default_factory=list)
    only_after: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The ``--compare --json`` document."""
        return {
            "metrics": [d.to_dict() for d in self.deltas],
            "per_kind_pass_rate": {kind: d.to_dict() for kind, d in self.per_kind.items()},
            "pass_to_fail": self.pass_to_fail,
            "fail_to_pass": self.fail_to_pass,
            "only_before": self.only_before,
            "only_after": self.only_after,
        }


def load_run(path: str | Path) -> dict[str, Any]:
    """Read a ``botkit eval --json`` file; :class:`ConfigError` when it is not one."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not a JSON file: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("cases"), list):
        raise ConfigError(f"{path}: not a `botkit eval --json` result (no 'cases' list)")
    return data


def _number(value: Any) -> float | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def compare_runs(before: dict[str, Any], after: dict[str, Any]) -> Comparison:
    """Compare two run documents (A = before, B = after)."""
    deltas = [
        Delta(metric, _number(before.get(metric)), _number(after.get(metric)))
        for metric in COMPARED
        if metric in before or metric in after
    ]
    kinds_a, kinds_b = before.get("per_kind") or {}, after.get("per_kind") or {}
    per_kind = {
        kind: Delta("pass_rate", _number((kinds_a.get(kind) or {}).get("pass_rate")),
                    _number((kinds_b.get(kind) or {}).get("pass_rate")))
        for kind in sorted(set(kinds_a) | set(kinds_b))
    }
    cases_a = {c["id"]: c for c in before["cases"] if isinstance(c, dict) and "id" in c}
    cases_b = {c["id"]: c for c in after["cases"] if isinstance(c, dict) and "id" in c}
    comparison = Comparison(deltas=deltas, per_kind=per_kind)
    for case_id, b in cases_b.items():
        a = cases_a.get(case_id)
        if a is None:
            comparison.only_after.append(case_id)
            continue
        row = {"id": case_id, "kind": b.get("kind"), "question": b.get("question"),
               "failures_before": a.get("failures") or [], "failures_after": b.get("failures") or []}
        if a.get("passed") and not b.get("passed"):
            comparison.pass_to_fail.append(row)
        elif b.get("passed") and not a.get("passed"):
            comparison.fail_to_pass.append(row)
    comparison.only_before = [case_id for case_id in cases_a if case_id not in cases_b]
    return comparison


__all__ = ["COMPARED", "Comparison", "Delta", "compare_runs", "load_run"]
