"""Typed records for the line-signal tests (and ``bench/signals.py``): unit verdicts and frame results."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from inspection.boxes import Box
from inspection.types import DefectFinding, Detections, Frame, FrameResult, FrameVerdict, UnitVerdict, Verdict

MODEL = "a" * 64
PROFILE = "b" * 64


def frame_verdict(unit_id: str, camera_id: str = "top", verdict: Verdict = Verdict.PASS, *, order_id: str = "O-1",
                  model: str = MODEL) -> FrameVerdict:
    findings: tuple[DefectFinding, ...] = ()
    reasons: tuple[str, ...] = ()
    if verdict is not Verdict.PASS:
        findings = (DefectFinding("scratch", 0.91, Box(1.0, 2.0, 30.5, 40.25), verdict, "scratch is critical"),)
        reasons = ("scratch is critical for profile cabinet",)
    return FrameVerdict(unit_id=unit_id, order_id=order_id, camera_id=camera_id, verdict=verdict,
                        findings=findings, reasons=reasons, model_sha256=model, profile_hash=PROFILE,
                        captured_at=datetime.now(UTC), frame_sha256="c" * 64)


def unit_verdict(unit_id: str, verdict: Verdict = Verdict.PASS, *, order_id: str = "O-1",
                 missing: tuple[str, ...] = (), model: str = MODEL) -> UnitVerdict:
    frames = (frame_verdict(unit_id, "top", Verdict.PASS, order_id=order_id, model=model),
              frame_verdict(unit_id, "side", verdict, order_id=order_id, model=model))
    reasons = () if verdict is Verdict.PASS else ("side: scratch is critical for profile cabinet",)
    if missing:
        reasons = (*reasons, f"views missing: {', '.join(missing)}")
    return UnitVerdict(unit_id=unit_id, order_id=order_id, verdict=verdict, frames=frames, reasons=reasons,
                       missing_views=missing, complete=not missing)


def frame_result(unit_id: str, verdict: Verdict = Verdict.FAIL, camera_id: str = "side") -> FrameResult:
    v = frame_verdict(unit_id, camera_id, verdict)
    frame = Frame(image=np.zeros((8, 8, 3), np.uint8), camera_id=camera_id, unit_id=unit_id, order_id=v.order_id,
                  captured_at=v.captured_at)
    return FrameResult(frame, Detections.empty(("scratch",)), v)
