"""The promotion gate as a pure policy (the registry applies it inside a transaction: test_repository.py)."""

from __future__ import annotations

from typing import Any

import pytest

from models.registry.gate import GateCheck, judge


def metrics(map50: float, map50_95: float, snapshot_id: str | None = None, **ap50: float) -> dict[str, Any]:
    found: dict[str, Any] = {"map50": map50, "map50_95": map50_95,
                             "per_class": {name: {"ap50": v} for name, v in ap50.items()}}
    if snapshot_id is not None:
        found["snapshot_id"] = snapshot_id
    return found


CHAMP = metrics(0.80, 0.50, scratch=0.90, dent=0.70)
HOLDOUT = "f" * 64

CASES = [
    # (id, candidate, champion, tolerance, failing check names)
    ("equal passes", CHAMP, CHAMP, 0.0, []),
    ("exactly at the tolerance passes", metrics(0.79, 0.49, scratch=0.89, dent=0.69), CHAMP, 0.01, []),
    ("just below the tolerance fails", metrics(0.7899, 0.50, scratch=0.90, dent=0.70), CHAMP, 0.01, ["map50"]),
    ("a class traded for another fails", metrics(0.9, 0.6, scratch=0.99, dent=0.5), CHAMP, 0.01, ["dent ap50"]),
    ("a class not measured fails", metrics(0.9, 0.6, scratch=0.99), CHAMP, 0.01, ["dent ap50"]),
    ("a class only the candidate has is not judged", metrics(0.8, 0.5, scratch=0.9, dent=0.7, knot=0.0), CHAMP,
     0.0, []),
    ("numbers that are not numbers fail", {"map50": "n/a", "map50_95": None}, CHAMP, 0.01,
     ["map50", "map50_95", "dent ap50", "scratch ap50"]),
    ("measured on another snapshot fails", metrics(0.9, 0.6, "e" * 64, scratch=0.99, dent=0.9), CHAMP, 0.01,
     ["candidate holdout"]),
    ("missing candidate evaluation fails", None, CHAMP, 0.01, ["candidate holdout metrics"]),
    ("missing both evaluations fails twice", None, None, 0.01,
     ["candidate holdout metrics", "champion holdout metrics"]),
]


@pytest.mark.parametrize(("candidate", "champion", "tolerance", "failing"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_judge(candidate: dict[str, Any] | None, champion: dict[str, Any] | None, tolerance: float,
               failing: list[str]) -> None:
    checks = judge(candidate, champion, tolerance=tolerance, holdout_snapshot_id=HOLDOUT)
    assert [c.name for c in checks if not c.passed] == failing
    assert all(isinstance(c, GateCheck) for c in checks)


def test_a_failed_check_names_both_numbers() -> None:
    [check] = [c for c in judge(metrics(0.5, 0.5), metrics(0.8, 0.4), tolerance=0.01) if not c.passed]
    assert check.describe(0.01) == "map50: candidate 0.5000 < champion 0.8000 - tolerance 0.0100"
