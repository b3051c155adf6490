"""Builders of orders, frames and verdicts for the store tests: no model, no files, only what a row needs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import cv2
import numpy as np

from inspection.boxes import Box
from inspection.profiles import InspectionProfile, Order, OrderBook
from inspection.types import (
    DefectFinding,
    Detections,
    Frame,
    FrameFailure,
    FrameResult,
    FrameVerdict,
    UnitVerdict,
    Verdict,
)

T0 = datetime(2025, 11, 3, 8, 0, tzinfo=UTC)
MODEL_SHA = "m" * 64

GLOSS = InspectionProfile.model_validate(
    {"name": "gloss", "classes": {"scratch": {"confidence": 0.5, "review_from": 0.3, "critical": True}},
     "required_views": ["top", "side"]})
RUSTIC = InspectionProfile.model_validate({"name": "rustic", "default": {"max_count": 3}})


def book(*orders: Order, profiles: Sequence[InspectionProfile] = (GLOSS, RUSTIC)) -> OrderBook:
    return OrderBook(profiles={p.name: p for p in profiles}, orders=tuple(orders))


def order(order_id: str = "ORD-1", profile: str = "gloss", **fields: object) -> Order:
    return Order.model_validate({"id": order_id, "profile": profile, "customer_ref": f"cust-{order_id}",
                                 "product": "door", **fields})


def standard_book() -> OrderBook:
    return book(order("ORD-1", "gloss"), order("ORD-2", "rustic"))


def finding(cls: str = "scratch", outcome: Verdict = Verdict.FAIL, confidence: float = 0.9) -> DefectFinding:
    return DefectFinding(cls, confidence, Box(1.0, 2.0, 30.5, 40.25), outcome, f"{cls} -> {outcome}")


def image(value: int = 200) -> np.ndarray:
    img = np.full((16, 16, 3), value, np.uint8)
    img[4:8, 4:8] = 255 - value  # not flat, so the JPEG is a real picture
    return img


def result(unit: str = "U1", order_id: str = "ORD-1", camera: str = "top", *, seq: int = 0,
           verdict: Verdict = Verdict.PASS, findings: Sequence[DefectFinding] = (),
           with_bytes: bool = False, profile: InspectionProfile = GLOSS) -> FrameResult:
    """A decoded frame (pixels differ by ``seq``) and its verdict; ``with_bytes`` adds PNG bytes."""
    img = image(seq % 250)
    data = cv2.imencode(".png", img)[1].tobytes() if with_bytes else b""
    at = T0 + timedelta(seconds=seq)
    frame = Frame(image=img, camera_id=camera, unit_id=unit, order_id=order_id, captured_at=at,
                  source="test", source_seq=seq, data=data)
    reasons = tuple(f.rule for f in findings) or (("looks bad",) if verdict is not Verdict.PASS else ())
    fv = FrameVerdict(unit_id=unit, order_id=order_id, camera_id=camera, verdict=verdict,
                      findings=tuple(findings), reasons=reasons, model_sha256=MODEL_SHA,
                      profile_hash=profile.content_hash, captured_at=at, frame_sha256=frame.sha256,
                      engine="openvino", precision="bf16")
    return FrameResult(frame=frame, detections=Detections.empty(["scratch", "dent"]), verdict=fv)


def failure(unit: str = "U1", order_id: str = "ORD-1", camera: str = "side", *, seq: int = 0,
            error: str = "truncated JPEG") -> FrameResult:
    at = T0 + timedelta(seconds=seq)
    frame = FrameFailure(camera_id=camera, unit_id=unit, order_id=order_id, captured_at=at, source="test",
                         error=error, source_seq=seq)
    fv = FrameVerdict(unit_id=unit, order_id=order_id, camera_id=camera, verdict=Verdict.REVIEW, findings=(),
                      reasons=(f"frame from {camera} unreadable: {error}",), model_sha256=MODEL_SHA,
                      profile_hash=GLOSS.content_hash, captured_at=at, error=error)
    return FrameResult(frame=frame, detections=None, verdict=fv)


def unit_verdict(unit: str, order_id: str, verdict: Verdict,
                 frames: Sequence[FrameResult] = ()) -> UnitVerdict:
    return UnitVerdict(unit_id=unit, order_id=order_id, verdict=verdict,
                       frames=tuple(r.verdict for r in frames),
                       reasons=() if verdict is Verdict.PASS else (f"unit {verdict}",))
