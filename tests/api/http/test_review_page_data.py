"""What the unit page is told to draw: the classes a frame's or a unit's count reasons name."""

from __future__ import annotations

import pytest

from api.http.routes.web import named_classes, page_data, unit_level_classes
from api.http.schemas import UnitRecordOut


def record(unit_reasons: list[str], frame_reasons: list[str], verdict: str = "FAIL") -> UnitRecordOut:
    findings = [{"class": c, "confidence": 0.7, "box": [0, 0, 5, 5], "outcome": "PASS", "rule": ""}
                for c in ("pitted_surface", "pit", "scratches")]
    frame = {"id": 1, "camera_id": "top", "captured_at": None, "frame_sha256": "f" * 64,
             "verdict": "FAIL" if frame_reasons else "PASS", "reasons": frame_reasons, "findings": findings,
             "conformance": [], "model_sha256": "", "engine": "", "precision": "", "profile_hash": "", "error": "",
             "source": "", "recorded_at": None, "evidence_url": None, "reviews": []}
    order = {"id": "ORD", "customer_ref": "", "product": "", "attributes": {}, "due_date": None, "profile": "p"}
    return UnitRecordOut.model_validate({
        "unit_id": "U", "order_id": "ORD", "status": "closed", "verdict": verdict, "reasons": unit_reasons,
        "missing_views": [], "complete": True, "created_at": None, "closed_at": None, "updated_at": None,
        "order": order, "profile": {"name": "p", "hash": "h", "spec": None}, "model_sha256s": [],
        "dispositions": [], "frames": [frame]})


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
