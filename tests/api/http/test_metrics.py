"""Prometheus label sets stay bounded whatever ids the cameras send."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from api.services.metrics import ServiceMetrics
from inspection.pipeline import FrameOutcome, FrameStatus
from inspection.types import Detections, Frame, FrameResult, FrameVerdict, Verdict


def _outcome(camera: str, order: str) -> FrameOutcome:
    now = datetime.now(UTC)
    frame = Frame(np.zeros((8, 8, 3), np.uint8), camera, "U", order, now)
    verdict = FrameVerdict("U", order, camera, Verdict.PASS, (), (), "m" * 64, "p" * 64, now)
    return FrameOutcome(frame, FrameStatus.JUDGED, FrameResult(frame, Detections.empty(["a"]), verdict))


def test_order_and_camera_series_are_bounded() -> None:
    metrics = ServiceMetrics(max_orders=3, max_cameras=2)
    metrics.observe_batch([_outcome(f"cam-{i}", f"ORD-{i}") for i in range(10)], 0.01, 0.0)
    text = metrics.exposition().decode()
    assert text.count("qcline_order_frame_verdicts_total{") == 3
    assert 'order="ORD-9"' in text and 'order="ORD-0"' not in text
    assert 'camera="cam-0"' in text and 'camera="cam-1"' in text and 'camera="cam-5"' not in text
    assert 'qcline_frames_total{camera="other",verdict="PASS"} 8.0' in text
