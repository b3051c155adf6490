"""Profile rules and unit roll-up as tables: one row per rule an order can set."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from inspection.profiles import InspectionProfile
from inspection.rules import failed_frame, judge, roll_up
from inspection.types import Detections, FrameVerdict, Verdict

CLASSES = ("scratch", "knot", "dent")
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
SHA = "a" * 64

PROFILE = InspectionProfile.model_validate({
    "name": "gloss",
    "default": {"confidence": 0.5, "review_from": 0.3, "max_count": 0},
    "classes": {
        "scratch": {"confidence": 0.4, "review_from": 0.2, "critical": True},
        "knot": {"ignore": True},
        "dent": {"confidence": 0.5, "max_count": 2, "max_area_fraction": 0.05, "max_length_px": 30,
                 "review_from": 0.3},
    },
    "required_views": ["top", "front"],
})


def dets(*rows: tuple[str, float, tuple[float, float, float, float]]) -> Detections:
    if not rows:
        return Detections.empty(CLASSES)
    return Detections(np.array([r[2] for r in rows], np.float32), np.array([r[1] for r in rows], np.float32),
                      np.array([CLASSES.index(r[0]) for r in rows], np.int64), CLASSES)


SMALL = (10.0, 10.0, 20.0, 20.0)     # 100 px^2 of a 100x100 frame = 1 %, 10 px long
LARGE = (0.0, 0.0, 40.0, 40.0)       # 16 % of the frame, 40 px long
LONG = (0.0, 0.0, 35.0, 2.0)         # thin but 35 px long


def frame(detections: Detections, camera: str = "top") -> FrameVerdict:
    return judge(detections, frame_width=100, frame_height=100, unit_id="U1", order_id="O1", camera_id=camera,
                 captured_at=NOW, profile=PROFILE, model_sha256=SHA, frame_sha256=camera * 8)


@pytest.mark.parametrize(
    ("detections", "verdict", "reason_part"),
    [
        (dets(), Verdict.PASS, None),
        (dets(("scratch", 0.9, SMALL)), Verdict.FAIL, "critical"),
        (dets(("scratch", 0.3, SMALL)), Verdict.REVIEW, "review band"),
        (dets(("scratch", 0.1, SMALL)), Verdict.PASS, None),                 # below the review band
        (dets(("knot", 0.99, LARGE)), Verdict.PASS, None),                    # rustic: knots ignored
        (dets(("dent", 0.9, SMALL)), Verdict.PASS, None),                     # tolerated: 1 of 2
        (dets(("dent", 0.9, SMALL), ("dent", 0.8, SMALL), ("dent", 0.7, SMALL)), Verdict.FAIL, "3 dent"),
        (dets(("dent", 0.9, LARGE)), Verdict.FAIL, "covers"),
        (dets(("dent", 0.9, LONG)), Verdict.FAIL, "px long"),
        (dets(("dent", 0.4, LARGE)), Verdict.REVIEW, "uncertain"),            # uncertain: size not judged
        (dets(("dent", 0.9, SMALL), ("scratch", 0.3, SMALL)), Verdict.REVIEW, "scratch uncertain"),
        (dets(("dent", 0.9, LARGE), ("scratch", 0.3, SMALL)), Verdict.FAIL, "covers"),  # FAIL beats REVIEW
    ],
    ids=["clean", "critical", "review-band", "below-band", "ignored-class", "within-count", "over-count",
         "too-large", "too-long", "uncertain-large", "review-with-tolerated", "fail-beats-review"],
)
def test_frame_rules(detections: Detections, verdict: Verdict, reason_part: str | None) -> None:
    result = frame(detections)
    assert result.verdict is verdict
    if reason_part:
        assert any(reason_part in r for r in result.reasons), result.reasons
    assert result.profile_hash == PROFILE.content_hash
    assert result.model_sha256 == SHA


def test_default_rule_covers_classes_the_profile_does_not_name() -> None:
    profile = InspectionProfile.model_validate({"name": "strict", "default": {"confidence": 0.2}})
    result = judge(dets(("dent", 0.25, SMALL)), frame_width=100, frame_height=100, unit_id="U", order_id="O",
                   camera_id="c", captured_at=NOW, profile=profile, model_sha256=SHA)
    assert result.verdict is Verdict.FAIL


@pytest.mark.parametrize(
    ("frames", "closing", "verdict", "missing"),
    [
        ([("top", dets())], False, None, ()),                                        # waiting for front
        ([("top", dets()), ("front", dets())], False, Verdict.PASS, ()),
        ([("top", dets()), ("front", dets(("scratch", 0.9, SMALL)))], False, Verdict.FAIL, ()),
        ([("top", dets(("scratch", 0.3, SMALL))), ("front", dets())], False, Verdict.REVIEW, ()),
        ([("top", dets())], True, Verdict.REVIEW, ("front",)),                       # closed incomplete
        ([("top", dets(("dent", 0.9, SMALL), ("dent", 0.9, (50, 50, 60, 60)))),
          ("front", dets(("dent", 0.9, SMALL)))], False, Verdict.FAIL, ()),          # 3 dents on the unit
        ([("top", dets(("dent", 0.9, SMALL))), ("front", dets(("dent", 0.9, SMALL)))], False, Verdict.PASS, ()),
    ],
    ids=["incomplete-open", "all-clean", "one-view-fails", "one-view-review", "closed-missing-view",
         "unit-count-over", "unit-count-within"],
)
def test_roll_up(frames: list[tuple[str, Detections]], closing: bool, verdict: Verdict | None,
                 missing: tuple[str, ...]) -> None:
    unit = roll_up([frame(d, camera) for camera, d in frames], PROFILE, closing=closing)
    if verdict is None:
        assert unit is None
        return
    assert unit is not None
    assert unit.verdict is verdict
    assert unit.missing_views == missing
    assert unit.complete is (not missing)
    if verdict is not Verdict.PASS:
        assert unit.reasons


def test_missing_view_verdict_can_be_fail_and_unreadable_frames_do_not_count_as_views() -> None:
    profile = PROFILE.model_copy(update={"missing_view_verdict": "FAIL"})
    broken = failed_frame(unit_id="U1", order_id="O1", camera_id="front", captured_at=NOW, error="truncated",
                          profile=profile, model_sha256=SHA)
    assert broken.verdict is Verdict.REVIEW and "unreadable" in broken.reasons[0]
    good = judge(dets(), frame_width=100, frame_height=100, unit_id="U1", order_id="O1", camera_id="top",
                 captured_at=NOW, profile=profile, model_sha256=SHA)
    assert roll_up([good, broken], profile) is None  # front is still missing: its frame was unreadable
    unit = roll_up([good, broken], profile, closing=True)
    assert unit is not None and unit.verdict is Verdict.FAIL and unit.missing_views == ("front",)


# -- findings that fail through a count rule say FAIL themselves (issue 14, section 5) ---------------------


def test_findings_over_the_frame_count_are_marked_fail_with_the_count_reason() -> None:
    result = frame(dets(("dent", 0.9, SMALL), ("dent", 0.8, SMALL), ("dent", 0.7, SMALL), ("dent", 0.4, SMALL)))
    assert result.verdict is Verdict.FAIL
    counted = [f for f in result.findings if f.confidence >= 0.5]
    assert [f.outcome for f in counted] == [Verdict.FAIL] * 3
    assert all("3 dent on the frame, 2 tolerated" in f.rule for f in counted)
    assert [f.outcome for f in result.findings if f.confidence < 0.5] == [Verdict.REVIEW]  # uncertain stays


def test_findings_within_the_count_stay_pass() -> None:
    result = frame(dets(("dent", 0.9, SMALL), ("dent", 0.8, SMALL)))
    assert [f.outcome for f in result.findings] == [Verdict.PASS, Verdict.PASS]


def test_findings_over_the_unit_count_are_marked_fail_on_the_unit_only() -> None:
    top = frame(dets(("dent", 0.9, SMALL), ("dent", 0.9, (50, 50, 60, 60))), "top")
    front = frame(dets(("dent", 0.9, SMALL)), "front")
    assert top.verdict is Verdict.PASS and all(f.outcome is Verdict.PASS for f in top.findings)
    unit = roll_up([top, front], PROFILE)
    assert unit is not None and unit.verdict is Verdict.FAIL
    outcomes = [f.outcome for fv in unit.frames for f in fv.findings]
    assert outcomes == [Verdict.FAIL] * 3
    assert all("on the unit" in f.rule for fv in unit.frames for f in fv.findings)
    assert [fv.verdict for fv in unit.frames] == [Verdict.PASS, Verdict.PASS]  # each frame alone was fine
