"""Pure judgement: detections + an order's profile -> a frame verdict; frame verdicts -> a unit verdict.

No I/O and no model here, so every rule is a row in a parametrized test table.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from inspection.boxes import Box
from inspection.profiles import InspectionProfile
from inspection.types import (
    ConformanceResult,
    DefectFinding,
    Detections,
    FrameVerdict,
    UnitVerdict,
    Verdict,
    worst,
)


def _judge_one(class_name: str, confidence: float, box: Box, frame_w: int, frame_h: int,
               profile: InspectionProfile) -> DefectFinding | None:
    rule = profile.rule_for(class_name)
    if rule.ignore or confidence < rule.review_threshold:
        return None
    if confidence < rule.confidence:
        return DefectFinding(class_name, confidence, box, Verdict.REVIEW,
                             f"{class_name} uncertain: confidence {confidence:.2f} in review band "
                             f"[{rule.review_threshold:.2f}, {rule.confidence:.2f})")
    if rule.critical:
        return DefectFinding(class_name, confidence, box, Verdict.FAIL,
                             f"{class_name} is critical for profile {profile.name}")
    width, height = box.width, box.height
    if rule.max_area_fraction is not None and width * height > rule.max_area_fraction * frame_w * frame_h:
        return DefectFinding(class_name, confidence, box, Verdict.FAIL,
                             f"{class_name} covers {width * height / (frame_w * frame_h):.1%} of the frame, "
                             f"over the {rule.max_area_fraction:.1%} tolerated")
    if rule.max_length_px is not None and max(width, height) > rule.max_length_px:
        return DefectFinding(class_name, confidence, box, Verdict.FAIL,
                             f"{class_name} is {max(width, height):.0f} px long, over the "
                             f"{rule.max_length_px:.0f} px tolerated")
    return DefectFinding(class_name, confidence, box, Verdict.PASS, f"{class_name} counted")


def _over_count(findings: Sequence[DefectFinding], profile: InspectionProfile) -> dict[str, int]:
    """Classes whose counted (not uncertain) defects exceed the class's ``max_count``, with the count."""
    counted = Counter(f.class_name for f in findings if f.outcome is not Verdict.REVIEW)
    return {name: n for name, n in sorted(counted.items())
            if not profile.rule_for(name).critical and n > profile.rule_for(name).max_count}


def _count_reason(class_name: str, count: int, profile: InspectionProfile, scope: str) -> str:
    return (f"{count} {class_name} on the {scope}, {profile.rule_for(class_name).max_count} "
            f"tolerated by {profile.name}")


def _mark_over_count(findings: Sequence[DefectFinding],
                     reasons_by_class: Mapping[str, str]) -> tuple[DefectFinding, ...]:
    """Counted findings of a class that failed its count rule say so themselves (outcome FAIL, the count
    reason as rule): an operator must see *which* findings failed the unit, not a PASS beside a FAIL reason."""
    return tuple(replace(f, outcome=Verdict.FAIL, rule=reasons_by_class[f.class_name])
                 if f.outcome is Verdict.PASS and f.class_name in reasons_by_class else f for f in findings)


def _review_reasons(findings: Sequence[DefectFinding], profile: InspectionProfile) -> list[str]:
    """One reason per uncertain class, not per box: an operator reads these on a busy line."""
    uncertain: dict[str, list[float]] = {}
    for f in findings:
        if f.outcome is Verdict.REVIEW:
            uncertain.setdefault(f.class_name, []).append(f.confidence)
    reasons = []
    for class_name, confs in sorted(uncertain.items()):
        rule = profile.rule_for(class_name)
        spread = f"{min(confs):.2f}" if len(confs) == 1 else f"{min(confs):.2f}-{max(confs):.2f}"
        reasons.append(f"{class_name} uncertain: {len(confs)} at confidence {spread}, in the review band "
                       f"[{rule.review_threshold:.2f}, {rule.confidence:.2f})")
    return reasons


def judge(detections: Detections, *, frame_width: int, frame_height: int, unit_id: str, order_id: str,
          camera_id: str, captured_at: datetime, profile: InspectionProfile, model_sha256: str,
          frame_sha256: str = "", conformance: Sequence[ConformanceResult] = (), engine: str = "",
          precision: str = "") -> FrameVerdict:
    """Apply the order's profile to one frame's detections, and fold in its conformance results (measured
    by ``inspection.conformance``): a failed one fails the frame, an uncertain one sends it to REVIEW."""
    findings: list[DefectFinding] = []
    parts = profile.part_classes
    for i, box in enumerate(detections.boxes()):
        if detections.class_name(i) in parts:  # a handle is counted by its count rule, not judged as a defect
            continue
        finding = _judge_one(detections.class_name(i), float(detections.confidence[i]),
                             box, frame_width, frame_height, profile)
        if finding is not None:
            findings.append(finding)
    reasons = [f.rule for f in findings if f.outcome is Verdict.FAIL]
    over = {c: _count_reason(c, n, profile, "frame") for c, n in _over_count(findings, profile).items()}
    reasons += list(over.values())
    reasons += [c.reason for c in conformance if c.outcome is Verdict.FAIL]
    findings = list(_mark_over_count(findings, over))
    verdict = Verdict.FAIL if reasons else Verdict.PASS
    if verdict is Verdict.PASS:
        reasons = _review_reasons(findings, profile) + [c.reason for c in conformance if c.outcome is Verdict.REVIEW]
        verdict = Verdict.REVIEW if reasons else Verdict.PASS
    return FrameVerdict(unit_id=unit_id, order_id=order_id, camera_id=camera_id, verdict=verdict,
                        findings=tuple(findings), reasons=tuple(dict.fromkeys(reasons)),
                        model_sha256=model_sha256, profile_hash=profile.content_hash,
                        captured_at=captured_at, frame_sha256=frame_sha256, conformance=tuple(conformance),
                        engine=engine, precision=precision)


def failed_frame(*, unit_id: str, order_id: str, camera_id: str, captured_at: datetime, error: str,
                 profile: InspectionProfile, model_sha256: str, engine: str = "",
                 precision: str = "") -> FrameVerdict:
    """A frame that could not be read still counts for its unit: a person must look (or it fails)."""
    return FrameVerdict(unit_id=unit_id, order_id=order_id, camera_id=camera_id,
                        verdict=Verdict(profile.failed_frame_verdict), findings=(),
                        reasons=(f"frame from {camera_id} unreadable: {error}",), model_sha256=model_sha256,
                        profile_hash=profile.content_hash, captured_at=captured_at, error=error, engine=engine,
                        precision=precision)


def missing_views(frames: Sequence[FrameVerdict], profile: InspectionProfile) -> tuple[str, ...]:
    """Required views without a readable frame yet."""
    seen = {f.camera_id for f in frames if not f.error}
    return tuple(v for v in profile.required_views if v not in seen)


def roll_up(frames: Sequence[FrameVerdict], profile: InspectionProfile, *, closing: bool = False) -> UnitVerdict | None:
    """The unit's verdict, or ``None`` while required views are still missing and the unit is open.

    A unit is as bad as its worst frame, plus unit-wide counts (three tolerated-one-per-view scratches
    are still three scratches). Closing a unit with views missing yields the profile's
    ``missing_view_verdict`` and names the views.
    """
    if not frames:
        if not closing:
            return None
        raise ValueError("cannot close a unit that has no frames")
    unit_id, order_id = frames[0].unit_id, frames[0].order_id
    missing = missing_views(frames, profile)
    if missing and not closing:
        return None
    verdict = worst([f.verdict for f in frames])
    reasons = [r for f in frames if f.verdict is not Verdict.PASS for r in f.reasons]
    # Unit-wide counts add a reason only where no single frame already failed on that class's count.
    over_on_a_frame = {c for f in frames for c in _over_count(f.findings, profile)}
    unit_counts = {c: _count_reason(c, n, profile, "unit")
                   for c, n in _over_count([x for f in frames for x in f.findings], profile).items()
                   if c not in over_on_a_frame}
    if unit_counts:
        verdict = Verdict.FAIL
        reasons += list(unit_counts.values())
        frames = [replace(f, findings=_mark_over_count(f.findings, unit_counts)) for f in frames]
    if missing:
        verdict = worst([verdict, Verdict(profile.missing_view_verdict)])
        reasons.append(f"unit closed without required views: {', '.join(missing)}")
    return UnitVerdict(unit_id=unit_id, order_id=order_id, verdict=verdict, frames=tuple(frames),
                       reasons=tuple(dict.fromkeys(reasons)), missing_views=missing, complete=not missing)
