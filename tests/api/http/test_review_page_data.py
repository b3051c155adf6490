"""What the unit page is told to draw: the classes a frame's or a unit's count reasons name."""

from __future__ import annotations

from typing import Any

import pytest

from api.http.routes.web import named_classes, page_data, unit_level_classes


def record(unit_reasons: list[str], frame_reasons: list[str], verdict: str = "FAIL") -> dict[str, Any]:
    findings = [{"class": c, "confidence": 0.7, "box": [0, 0, 5, 5], "outcome": "PASS", "rule": ""}
                for c in ("pitted_surface", "pit", "scratches")]
    frame = {"id": 1, "camera_id": "top", "verdict": "FAIL" if frame_reasons else "PASS", "reasons": frame_reasons,
             "findings": findings, "evidence_url": None, "reviews": []}
    return {"unit_id": "U", "verdict": verdict, "reasons": unit_reasons, "dispositions": [], "frames": [frame]}


@pytest.mark.parametrize(
    ("unit_reasons", "frame_reasons", "unit_classes", "frame_classes"),
    [
        (["4 pitted_surface on the unit, 2 tolerated by powder-coated"], [], ["pitted_surface"], []),
        ([], ["3 pit on the frame, 2 tolerated by p"], [], ["pit"]),           # "pit" is not "pitted_surface"
        (["missing view bottom"], [], [], []),
        (["3 scratches on the unit, 0 tolerated by x", "2 pit on the unit, 1 tolerated by x"], [],
         ["pit", "scratches"], []),
    ],
    ids=["unit-count", "frame-count-whole-word", "no-class-named", "two-classes"],
)
def test_count_reasons_name_the_classes_to_draw_in_the_verdict_colour(
        unit_reasons: list[str], frame_reasons: list[str], unit_classes: list[str], frame_classes: list[str]) -> None:
    rec = record(unit_reasons, frame_reasons)
    assert unit_level_classes(rec) == unit_classes
    data = page_data(rec, ["pit"])
    assert data["unit_level_classes"] == unit_classes and data["verdict"] == "FAIL"
    assert data["frames"][0]["reason_classes"] == frame_classes


def test_named_classes_ignores_substrings() -> None:
    assert named_classes({"in", "inclusion"}, ["1 inclusion on the frame"]) == ["inclusion"]
