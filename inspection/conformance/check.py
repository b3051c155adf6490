"""Measure a frame against its order's conformance rules: one ``ConformanceResult`` per applicable rule.

Pure given its inputs (the frame's pixels, its detections, the order, the camera's calibration): the
pipeline calls it next to the defect rules, and ``inspection.rules.judge`` folds the results into the
frame's verdict. Nothing here raises for bad order data or an unmeasurable frame: such a rule comes out
as the rule's ``unmeasurable`` verdict with the reason, so the line goes on and a person decides.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from inspection.conformance.colour import Lab, WhiteBalance, delta_e_2000, measure_lab, parse_colour
from inspection.conformance.dimensions import Scale, measure_panel_mm, parse_dimensions
from inspection.errors import QCError
from inspection.identity import LabelSettings
from inspection.profiles import ColourRule, DimensionRule, InspectionProfile, Order, PartCountRule
from inspection.types import ConformanceResult, Detections, Verdict

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CameraCalibration:
    """What a camera knows about its own colour and scale; either may be missing (not calibrated yet)."""

    camera_id: str
    white_balance: WhiteBalance | None = None
    scale: Scale | None = None
    label: LabelSettings | None = None
    """How this camera reads part labels (``qcline calibrate label``); ``None``: it does not."""
    details: Mapping[str, Any] = field(default_factory=dict)


def order_value(attributes: Mapping[str, Any], path: str) -> Any:
    """``attributes["bom"]["handle"]`` for ``"bom.handle"``; ``None`` when any step is missing."""
    value: Any = attributes
    for key in path.split("."):
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def _band(deviation: float, tolerance: float, margin: float) -> Verdict:
    if deviation <= tolerance:
        return Verdict.PASS
    return Verdict.REVIEW if deviation <= tolerance + margin else Verdict.FAIL


def _fmt_lab(lab: Lab) -> str:
    return f"Lab({lab[0]:.1f}, {lab[1]:.1f}, {lab[2]:.1f})"


def _unmeasurable(kind: str, name: str, verdict: str, expected: str, tolerance: str, why: str) -> ConformanceResult:
    return ConformanceResult(kind=kind, name=name, outcome=Verdict(verdict), measured="-", expected=expected,
                             tolerance=tolerance, deviation=None, reason=f"{name} not measured: {why}")


def check_colour(rule: ColourRule, image: npt.NDArray[np.uint8], order: Order,
                 calibration: CameraCalibration | None) -> ConformanceResult:
    name = rule.name or "colour"
    tolerance = f"ΔE00 <= {rule.max_delta_e:g}" + (f" (+{rule.review_margin:g} review)" if rule.review_margin else "")
    raw = order_value(order.attributes, rule.attribute)
    if raw is None:
        return _unmeasurable("colour", name, rule.unmeasurable, "-", tolerance,
                             f"order {order.id} has no attribute {rule.attribute!r}")
    try:
        expected = parse_colour(raw)
    except QCError as e:
        return _unmeasurable("colour", name, rule.unmeasurable, str(raw), tolerance, str(e))
    balance = calibration.white_balance if calibration is not None else None
    if balance is None:
        return _unmeasurable("colour", name, rule.unmeasurable, f"{raw} = {_fmt_lab(expected)}", tolerance,
                             "camera has no white-balance calibration (qcline calibrate colour)")
    measured = measure_lab(image, rule.roi, balance)
    delta = delta_e_2000(measured, expected)
    outcome = _band(delta, rule.max_delta_e, rule.review_margin)
    verb = {Verdict.PASS: "within", Verdict.REVIEW: "in the review margin of", Verdict.FAIL: "over"}[outcome]
    return ConformanceResult(
        kind="colour", name=name, outcome=outcome, measured=_fmt_lab(measured),
        expected=f"{raw} = {_fmt_lab(expected)}", tolerance=tolerance, deviation=round(delta, 3),
        reason=f"{name}: ΔE00 {delta:.2f} to {raw}, {verb} the {rule.max_delta_e:g} tolerated",
        values=(("L", measured[0]), ("a", measured[1]), ("b", measured[2]), ("expected_L", expected[0]),
                ("expected_a", expected[1]), ("expected_b", expected[2]), ("delta_e", delta)))


def check_dimensions(rule: DimensionRule, image: npt.NDArray[np.uint8], order: Order,
                     calibration: CameraCalibration | None) -> ConformanceResult:
    name = rule.name or "dimensions"
    tolerance = f"± {rule.tolerance_mm:g} mm" + (f" (+{rule.review_margin_mm:g} review)"
                                                if rule.review_margin_mm else "")
    raw = order_value(order.attributes, rule.attribute)
    if raw is None:
        return _unmeasurable("dimensions", name, rule.unmeasurable, "-", tolerance,
                             f"order {order.id} has no attribute {rule.attribute!r}")
    try:
        width, height = parse_dimensions(raw)
    except QCError as e:
        return _unmeasurable("dimensions", name, rule.unmeasurable, str(raw), tolerance, str(e))
    expected_text = f"{width:g} x {height:g} mm"
    scale = calibration.scale if calibration is not None else None
    if scale is None:
        return _unmeasurable("dimensions", name, rule.unmeasurable, expected_text, tolerance,
                             "camera has no px/mm calibration (qcline calibrate scale)")
    try:
        long_mm, short_mm = measure_panel_mm(image, scale, rule.roi)
    except QCError as e:
        return _unmeasurable("dimensions", name, rule.unmeasurable, expected_text, tolerance, str(e))
    exp_long, exp_short = max(width, height), min(width, height)
    deviation = max(abs(long_mm - exp_long), abs(short_mm - exp_short))
    outcome = _band(deviation, rule.tolerance_mm, rule.review_margin_mm)
    verb = {Verdict.PASS: "within", Verdict.REVIEW: "in the review margin of", Verdict.FAIL: "over"}[outcome]
    return ConformanceResult(
        kind="dimensions", name=name, outcome=outcome, measured=f"{long_mm:.1f} x {short_mm:.1f} mm",
        expected=expected_text, tolerance=tolerance, deviation=round(deviation, 3),
        reason=f"{name}: {long_mm:.1f} x {short_mm:.1f} mm against {expected_text}, off by {deviation:.1f} mm, "
               f"{verb} the ± {rule.tolerance_mm:g} mm tolerated",
        values=(("long_mm", long_mm), ("short_mm", short_mm), ("expected_long_mm", exp_long),
                ("expected_short_mm", exp_short), ("px_per_mm", scale.px_per_mm)))


def check_count(rule: PartCountRule, detections: Detections, order: Order) -> ConformanceResult:
    name = rule.name or f"{rule.class_name} count"
    raw = order_value(order.attributes, rule.expected_attribute)
    if raw is None or isinstance(raw, bool) or not isinstance(raw, int | float) or raw != int(raw) or raw < 0:
        why = (f"order {order.id} has no attribute {rule.expected_attribute!r}" if raw is None
               else f"order attribute {rule.expected_attribute!r} = {raw!r} is not a count")
        return _unmeasurable("count", name, rule.unmeasurable, "-" if raw is None else str(raw), "exact", why)
    expected = int(raw)
    review_from = rule.confidence if rule.review_from is None else rule.review_from
    confs = [float(detections.confidence[i]) for i in range(len(detections))
             if detections.class_name(i) == rule.class_name]
    counted = sum(1 for c in confs if c >= rule.confidence)
    uncertain = sum(1 for c in confs if review_from <= c < rule.confidence)
    if counted == expected and not uncertain:
        outcome, how = Verdict.PASS, "as ordered"
    elif counted <= expected <= counted + uncertain or (counted == expected and uncertain):
        outcome, how = Verdict.REVIEW, f"{uncertain} more uncertain: a person must count"
    else:
        outcome, how = Verdict.FAIL, "not what was ordered"
    measured = f"{counted} {rule.class_name}" + (f" (+{uncertain} uncertain)" if uncertain else "")
    return ConformanceResult(
        kind="count", name=name, outcome=outcome, measured=measured, expected=f"{expected} {rule.class_name}",
        tolerance="exact", deviation=float(counted - expected),
        reason=f"{name}: {counted} found, {expected} ordered ({rule.expected_attribute}), {how}",
        values=(("counted", float(counted)), ("uncertain", float(uncertain)), ("expected", float(expected))))


def check_conformance(image: npt.NDArray[np.uint8], detections: Detections, *, camera_id: str, order: Order,
                      profile: InspectionProfile,
                      calibration: CameraCalibration | None = None) -> tuple[ConformanceResult, ...]:
    """Every conformance rule of ``profile`` that applies to ``camera_id``, measured on this frame."""
    results: list[ConformanceResult] = []
    for rule in profile.conformance:
        if not rule.applies_to(camera_id):
            continue
        if isinstance(rule, ColourRule):
            results.append(check_colour(rule, image, order, calibration))
        elif isinstance(rule, DimensionRule):
            results.append(check_dimensions(rule, image, order, calibration))
        else:
            results.append(check_count(rule, detections, order))
    return tuple(results)
