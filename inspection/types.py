"""The records that flow through a station: ``Frame -> Detections -> FrameVerdict -> UnitVerdict``.

All are frozen dataclasses validated on construction, so a bad value fails where it is made, with a
message that says what was expected, instead of three modules later.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

import numpy as np
import numpy.typing as npt

from inspection.boxes import Box, check_xyxy
from inspection.errors import InvalidFrameError
from inspection.hashing import sha256_bytes


class Verdict(enum.StrEnum):
    """Ordered by severity: a unit is as bad as its worst frame."""

    PASS = "PASS"
    REVIEW = "REVIEW"
    FAIL = "FAIL"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


_SEVERITY = {Verdict.PASS: 0, Verdict.REVIEW: 1, Verdict.FAIL: 2}


def worst(verdicts: Sequence[Verdict]) -> Verdict:
    return max(verdicts, key=lambda v: v.severity, default=Verdict.PASS)


@dataclass(frozen=True, eq=False)
class Frame:
    """One decoded image (H x W x 3, uint8, BGR as OpenCV gives it) and where it came from."""

    image: npt.NDArray[np.uint8]
    camera_id: str
    unit_id: str
    order_id: str
    captured_at: datetime
    source: str = ""
    source_seq: int = 0
    data: bytes = b""
    """The encoded bytes the image was decoded from, when there were any (files, HTTP uploads)."""
    scale: int = 1
    """``image`` is 1/``scale`` of the encoded image's size (a large frame decoded reduced): boxes found on
    it are multiplied by ``scale`` to be in the original's pixels, which the evidence and the rules use."""

    def __post_init__(self) -> None:
        image = self.image
        if not isinstance(image, np.ndarray):
            raise InvalidFrameError(f"Frame.image must be a numpy array, got {type(image).__name__}")
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise InvalidFrameError(f"Frame.image must be HxWx3 uint8 (BGR), got {image.shape} {image.dtype}")
        if image.shape[0] < 8 or image.shape[1] < 8:
            raise InvalidFrameError(f"Frame.image is too small to inspect: {image.shape[1]}x{image.shape[0]}")
        for name in ("camera_id", "unit_id", "order_id"):
            if not getattr(self, name):
                raise InvalidFrameError(f"Frame.{name} must be a non-empty string")
        if self.captured_at.tzinfo is None:
            raise InvalidFrameError("Frame.captured_at must be timezone-aware (UTC recommended)")
        if not isinstance(self.scale, int) or self.scale < 1:
            raise InvalidFrameError(f"Frame.scale must be an integer >= 1, got {self.scale!r}")

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @cached_property
    def sha256(self) -> str:
        """Content address: of the encoded bytes when known, else of the pixels (video, cameras)."""
        return sha256_bytes(self.data) if self.data else sha256_bytes(self.image.tobytes())

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


@dataclass(frozen=True)
class FrameFailure:
    """A frame that could not be read or decoded: recorded against its unit while the line goes on."""

    camera_id: str
    unit_id: str
    order_id: str
    captured_at: datetime
    source: str
    error: str
    source_seq: int = 0

    def __post_init__(self) -> None:
        if not self.error:
            raise ValueError("FrameFailure.error must say what went wrong")


SourceItem = Frame | FrameFailure
"""What a frame source yields: a decoded frame, or the record of one that failed."""


@dataclass(frozen=True, eq=False)
class Detections:
    """Boxes of one frame in original-image pixels, in columnar arrays (as supervision does).

    ``xyxy`` is (N, 4) float32, ``confidence`` (N,) float32, ``class_id`` (N,) int64; ``class_names``
    maps ids to the model's names so a record can be read without the model at hand. Each row obeys the
    rules of ``Box`` (checked on the whole array at once); ``boxes()`` gives them as ``Box`` values.
    """

    xyxy: npt.NDArray[np.float32]
    confidence: npt.NDArray[np.float32]
    class_id: npt.NDArray[np.int64]
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        n = len(self.confidence)
        if self.xyxy.shape != (n, 4):
            raise ValueError(f"Detections.xyxy must have shape ({n}, 4), got {self.xyxy.shape}")
        if self.class_id.shape != (n,) or self.confidence.shape != (n,):
            raise ValueError(
                f"Detections arrays must all have {n} rows: confidence {self.confidence.shape}, "
                f"class_id {self.class_id.shape}")
        if n and (self.class_id.min() < 0 or self.class_id.max() >= len(self.class_names)):
            raise ValueError(f"Detections.class_id must index class_names (0..{len(self.class_names) - 1})")
        check_xyxy(self.xyxy, "Detections.xyxy")

    @classmethod
    def empty(cls, class_names: Sequence[str]) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64),
                   tuple(class_names))

    @classmethod
    def from_boxes(cls, boxes: Sequence[Box], confidence: Sequence[float], class_id: Sequence[int],
                   class_names: Sequence[str]) -> Detections:
        """Columnar detections from one ``Box`` per row (tests, tools, other detectors' output)."""
        xyxy = np.array([tuple(b) for b in boxes], np.float32).reshape(-1, 4)
        return cls(xyxy, np.asarray(confidence, np.float32).reshape(-1), np.asarray(class_id, np.int64).reshape(-1),
                   tuple(class_names))

    def boxes(self) -> tuple[Box, ...]:
        """The rows as ``Box`` values (in original-image pixels)."""
        return tuple(Box(*(float(v) for v in row)) for row in self.xyxy.tolist())

    def __len__(self) -> int:
        return len(self.confidence)

    def scaled(self, factor: float) -> Detections:
        """The same boxes in an image ``factor`` times larger (a frame decoded reduced, back to full size)."""
        if factor == 1:
            return self
        return Detections(self.xyxy * np.float32(factor), self.confidence, self.class_id, self.class_names)

    def class_name(self, index: int) -> str:
        return self.class_names[int(self.class_id[index])]

    def to_list(self) -> list[dict[str, object]]:
        """Plain JSON-ready rows: ``{"class", "confidence", "box": [x1, y1, x2, y2]}``."""
        return [
            {"class": self.class_name(i), "confidence": round(float(self.confidence[i]), 4),
             "box": [round(float(v), 1) for v in self.xyxy[i]]}
            for i in range(len(self))
        ]


@dataclass(frozen=True)
class DefectFinding:
    """One detection as judged by the order's profile: what it is and what the rule made of it."""

    class_name: str
    confidence: float
    box: Box
    outcome: Verdict
    rule: str

    def __post_init__(self) -> None:
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"DefectFinding.confidence must be in [0, 1], got {self.confidence}")

    def to_json(self) -> dict[str, object]:
        """``{"class", "confidence", "box": [x1, y1, x2, y2], "outcome", "rule"}``, as answers and line messages
        carry it (confidence to 4 places, the box to 0.1 px)."""
        return {"class": self.class_name, "confidence": round(float(self.confidence), 4),
                "box": [round(float(c), 1) for c in self.box], "outcome": self.outcome.value, "rule": self.rule}


@dataclass(frozen=True)
class ConformanceResult:
    """One conformance rule measured on one frame: what was measured, what the order asked for, the
    tolerance, and what the rule made of it (judged like a defect finding)."""

    kind: str
    """``colour``, ``dimensions`` or ``count``."""
    name: str
    outcome: Verdict
    measured: str
    """Human-readable measured value (``Lab(30.1, -1.2, -4.0)``, ``901.0 x 600.2 mm``, ``3 handle``)."""
    expected: str
    tolerance: str
    deviation: float | None
    """The number judged against the tolerance: ΔE00, the worse side's deviation in mm, the count difference."""
    reason: str
    values: tuple[tuple[str, float], ...] = ()
    """Measured and expected numbers by name, for reports and analytics."""

    def __post_init__(self) -> None:
        if not self.reason:
            raise ValueError("ConformanceResult.reason must say what was judged")
        if self.deviation is not None and not math.isfinite(self.deviation):
            raise ValueError(f"ConformanceResult.deviation must be finite, got {self.deviation}")

    def to_json(self) -> dict[str, object]:
        return {"kind": self.kind, "name": self.name, "outcome": self.outcome.value, "measured": self.measured,
                "expected": self.expected, "tolerance": self.tolerance, "deviation": self.deviation,
                "reason": self.reason, "values": dict(self.values)}


@dataclass(frozen=True)
class FrameVerdict:
    """The judgement of one frame against one order's profile, with the versions that made it."""

    unit_id: str
    order_id: str
    camera_id: str
    verdict: Verdict
    findings: tuple[DefectFinding, ...]
    reasons: tuple[str, ...]
    model_sha256: str
    profile_hash: str
    captured_at: datetime
    frame_sha256: str = ""
    error: str = ""
    conformance: tuple[ConformanceResult, ...] = ()
    engine: str = ""
    """Inference engine that ran the model (``onnxruntime``, ``openvino``), recorded beside ``model_sha256``."""
    precision: str = ""
    """Precision it ran at (``fp32``, ``bf16``, ``int8``): the same sha256 can give slightly different boxes."""

    def __post_init__(self) -> None:
        if self.verdict is not Verdict.PASS and not self.reasons:
            raise ValueError(f"FrameVerdict {self.verdict} must say why (reasons is empty)")


@dataclass(frozen=True)
class UnitVerdict:
    """A unit's verdict once every required view is in, or when it was closed with views missing."""

    unit_id: str
    order_id: str
    verdict: Verdict
    frames: tuple[FrameVerdict, ...]
    reasons: tuple[str, ...]
    missing_views: tuple[str, ...] = field(default_factory=tuple)
    complete: bool = True

    def __post_init__(self) -> None:
        if self.verdict is not Verdict.PASS and not self.reasons:
            raise ValueError(f"UnitVerdict {self.verdict} must say why (reasons is empty)")
        if self.missing_views and self.verdict is Verdict.PASS:
            raise ValueError("a unit with missing views cannot PASS")


@dataclass(frozen=True, eq=False)
class FrameResult:
    """What the sinks receive for each frame: the input, what the model saw, and the judgement.

    ``frame`` is a ``FrameFailure`` (and ``detections`` is ``None``) for a frame that could not be read.
    """

    frame: Frame | FrameFailure
    detections: Detections | None
    verdict: FrameVerdict

    def __post_init__(self) -> None:
        if isinstance(self.frame, Frame) and self.detections is None:
            raise ValueError("FrameResult of a decoded Frame needs its Detections")


@dataclass(frozen=True)
class Committed:
    """A frame result is durable (committed to the results store or the local outbox).

    ``inserted`` is ``False`` when it had been recorded before (a replay, or another process got it first);
    ``unit_verdict`` is the unit's verdict when this result completed or changed it, rolled up from the store.
    """

    inserted: bool
    unit_verdict: UnitVerdict | None = None
    queued: bool = False
    """In the station's outbox (the central database is unreachable): durable, replayed when it is back; the
    unit's verdict is then re-checked centrally (``unit_verdict`` is ``None`` until then)."""
