"""Conformance rules judged against the order: PASS / REVIEW / FAIL tables, the frame verdict, the station
loop with a calibrated camera, and the store keeping measured, expected and tolerance."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import pytest

from inspection.conformance import CameraCalibration, check_conformance
from inspection.conformance.colour import WhiteBalance, parse_colour
from inspection.conformance.dimensions import Scale
from inspection.conformance.synthetic import WHITE_TILE, panel, tile_roi
from inspection.pipeline import Inspector
from inspection.profiles import InspectionProfile, Order
from inspection.rules import judge
from inspection.types import Detections, Frame, FrameVerdict, Verdict

NOW = datetime(2026, 12, 1, 8, tzinfo=UTC)
CANVAS = (800, 600)
PX_PER_MM = 0.5
ANTHRACITE = parse_colour("RAL 7016")
CLASSES = ("handle", "scratch")

PROFILE = InspectionProfile.model_validate({
    "name": "painted-door",
    "default": {"confidence": 0.5, "max_count": 0},
    "conformance": [
        {"kind": "colour", "max_delta_e": 2.0, "review_margin": 1.0, "views": ["top"]},
        {"kind": "dimensions", "tolerance_mm": 3.0, "review_margin_mm": 2.0, "views": ["top"]},
        {"kind": "count", "class_name": "handle", "confidence": 0.6, "review_from": 0.3},
    ],
})
ORDER = Order(id="O-1", profile="painted-door",
              attributes={"colour": "RAL 7016 anthracite", "dimensions": "1000x800x18 mm", "bom": {"handle": 2}})
CAST = (1.05, 1.0, 0.85)


def door(colour: tuple[float, float, float] = ANTHRACITE, size_mm: tuple[float, float] = (1000, 800)) -> np.ndarray:
    return panel(CANVAS, (size_mm[0] * PX_PER_MM, size_mm[1] * PX_PER_MM), colour, angle_deg=2.0, cast=CAST,
                 noise=1.5, seed=2, belt_bgr=(200, 200, 200))


def calibration(image: np.ndarray | None = None) -> CameraCalibration:
    reference = door() if image is None else image
    return CameraCalibration("top", WhiteBalance.from_patch(reference, tile_roi(CANVAS), WHITE_TILE),
                             Scale(PX_PER_MM, "test"))


def handles(*confidences: float) -> Detections:
    n = len(confidences)
    if not n:
        return Detections.empty(CLASSES)
    return Detections(np.tile(np.array([[10, 10, 20, 20]], np.float32), (n, 1)), np.array(confidences, np.float32),
                      np.zeros(n, np.int64), CLASSES)


def results(image: np.ndarray, dets: Detections, order: Order = ORDER,
            cal: CameraCalibration | None = None, camera: str = "top") -> dict[str, Verdict]:
    out = check_conformance(image, dets, camera_id=camera, order=order, profile=PROFILE,
                            calibration=calibration() if cal is None else cal)
    return {r.kind: r.outcome for r in out}


@pytest.mark.parametrize(("colour_shift", "expected"), [
    ((0.0, 0.0, 0.0), Verdict.PASS),
    ((3.4, 0.0, 0.0), Verdict.REVIEW),  # ΔE00 2.55: within the 1.0 review margin over the 2.0 tolerated
    ((0.0, 0.0, -3.0), Verdict.REVIEW),  # ΔE00 2.47
    ((0.0, 4.0, -8.0), Verdict.FAIL)])  # ΔE00 7.9
def test_colour_rule(colour_shift: tuple[float, float, float], expected: Verdict) -> None:
    shifted = tuple(a + b for a, b in zip(ANTHRACITE, colour_shift, strict=True))
    assert results(door(colour=shifted), handles(0.9, 0.9))["colour"] is expected  # type: ignore[arg-type]


@pytest.mark.parametrize(("size", "expected"), [
    ((1000, 800), Verdict.PASS), ((1000, 796), Verdict.REVIEW), ((1000, 780), Verdict.FAIL),
    ((800, 1000), Verdict.PASS)])  # turned by 90 degrees: still the ordered panel
def test_dimension_rule(size: tuple[float, float], expected: Verdict) -> None:
    assert results(door(size_mm=size), handles(0.9, 0.9))["dimensions"] is expected


@pytest.mark.parametrize(("confidences", "expected"), [
    ((0.9, 0.8), Verdict.PASS), ((0.9,), Verdict.FAIL), ((0.9, 0.9, 0.9), Verdict.FAIL),
    ((0.9, 0.4), Verdict.REVIEW), ((0.9, 0.8, 0.4), Verdict.REVIEW), ((0.9, 0.2), Verdict.FAIL)])
def test_count_rule(confidences: tuple[float, ...], expected: Verdict) -> None:
    assert results(door(), handles(*confidences))["count"] is expected


@pytest.mark.parametrize(("attributes", "cal", "kind", "why"), [
    ({"dimensions": "1000x800", "bom": {"handle": 2}}, True, "colour", "no attribute 'colour'"),
    ({"colour": "satin", "dimensions": "1000x800", "bom": {"handle": 2}}, True, "colour", "satin"),
    ({"colour": "RAL 7016", "dimensions": "1000x800", "bom": {"handle": 2}}, False, "colour", "white-balance"),
    ({"colour": "RAL 7016", "dimensions": "1000x800", "bom": {"handle": 2}}, False, "dimensions", "px/mm"),
    ({"colour": "RAL 7016", "dimensions": "large", "bom": {"handle": 2}}, True, "dimensions", "large"),
    ({"colour": "RAL 7016", "dimensions": "1000x800", "bom": {"handle": "two"}}, True, "count", "not a count"),
])
def test_what_cannot_be_measured_goes_to_review_with_the_reason(attributes: dict[str, object], cal: bool,
                                                                 kind: str, why: str) -> None:
    order = ORDER.model_copy(update={"attributes": attributes})
    out = check_conformance(door(), handles(0.9, 0.9), camera_id="top", order=order, profile=PROFILE,
                            calibration=calibration() if cal else CameraCalibration("top"))
    result = next(r for r in out if r.kind == kind)
    assert result.outcome is Verdict.REVIEW and why in result.reason


def test_rules_apply_only_to_their_views() -> None:
    out = check_conformance(door(), handles(0.9, 0.9), camera_id="side", order=ORDER, profile=PROFILE)
    assert [r.kind for r in out] == ["count"]


def test_the_frame_verdict_carries_measured_expected_and_tolerance() -> None:
    image, dets = door(size_mm=(1000, 780)), handles(0.9, 0.9)
    conformance = check_conformance(image, dets, camera_id="top", order=ORDER, profile=PROFILE,
                                    calibration=calibration())
    verdict = judge(dets, frame_width=CANVAS[0], frame_height=CANVAS[1], unit_id="U", order_id="O-1",
                    camera_id="top", captured_at=NOW, profile=PROFILE, model_sha256="m" * 64,
                    conformance=conformance)
    assert verdict.verdict is Verdict.FAIL
    assert verdict.findings == ()  # handles are parts, not defects
    dims = next(c for c in verdict.conformance if c.kind == "dimensions")
    assert dims.expected == "1000 x 800 mm" and dims.tolerance.startswith("± 3") and "780" in dims.measured
    assert dims.deviation == pytest.approx(20.0, abs=1.0)
    assert any("dimensions" in r and "over" in r for r in verdict.reasons)


class _Detector:
    model_sha256 = "d" * 64
    class_names = CLASSES

    def detect(self, images: Sequence[np.ndarray], confidence: float | None = None) -> list[Detections]:
        return [handles(0.9, 0.9) for _ in images]


class _Orders:
    def get_order(self, order_id: str) -> tuple[Order, InspectionProfile]:
        return ORDER, PROFILE

    def unit_histories(self, unit_ids: Sequence[str]) -> dict[str, tuple[str, list[FrameVerdict]]]:
        return {}


class _Calibrations:
    def __init__(self) -> None:
        self.calls = 0

    def camera_calibration(self, camera_id: str) -> CameraCalibration | None:
        self.calls += 1
        return calibration()


def test_the_station_loop_measures_with_the_cameras_calibration() -> None:
    cals = _Calibrations()
    inspector = Inspector(_Detector(), _Orders(), calibrations=cals)
    frames = [Frame(door(colour=c), "top", f"U{i}", "O-1", NOW) for i, c in
              enumerate([ANTHRACITE, (ANTHRACITE[0] + 8, ANTHRACITE[1], ANTHRACITE[2])])]
    outcomes = inspector.inspect_frames(frames)
    verdicts = [o.result.verdict for o in outcomes if o.result is not None]
    assert [v.verdict for v in verdicts] == [Verdict.PASS, Verdict.FAIL]
    assert cals.calls == 1  # cached per camera, not looked up per frame
    assert [c.kind for c in verdicts[0].conformance] == ["colour", "dimensions", "count"]
