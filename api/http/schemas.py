"""Wire schemas of the HTTP API (pydantic). The runtime's records stay in ``inspection/``; these are
what crosses the network, documented in the OpenAPI schema."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field, field_validator

from inspection.ids import IdentifierError, check_identifier
from inspection.profiles import InspectionProfile

_STRICT = ConfigDict(extra="forbid")

MAX_ROW_ID = 2**63 - 1
RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID, description="A record id (positive 64-bit integer).")]
"""Database ids in paths: bounded, so a fuzzer's 10**30 is a 422, not a driver overflow."""


class Detection(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    class_: str = Field(alias="class", description="Defect class name from the model package.")
    confidence: float
    box: list[float] = Field(description="[x1, y1, x2, y2] in pixels of the uploaded image.")


class Finding(Detection):
    outcome: str = Field(description="What the order's rule made of it: PASS (ignored), REVIEW or FAIL.")
    rule: str


class UnitVerdictOut(BaseModel):
    unit_id: str
    order_id: str
    verdict: str
    reasons: list[str]
    missing_views: list[str]
    complete: bool
    frames: int


class ConformanceOut(BaseModel):
    """One conformance rule (or the label identity check) measured on the frame."""

    kind: str = Field(description="colour, dimensions, count or identity.")
    name: str
    outcome: str
    measured: str
    expected: str
    tolerance: str
    deviation: float | None
    reason: str
    values: dict[str, float] = Field(default_factory=dict)


class FrameVerdictOut(BaseModel):
    unit_id: str
    order_id: str
    camera_id: str
    captured_at: str
    frame_sha256: str
    verdict: str = Field(description="PASS, REVIEW or FAIL, judged against the order's inspection profile.")
    reasons: list[str]
    detections: list[Detection] = Field(description="What the model saw (above the package's threshold).")
    findings: list[Finding]
    conformance: list[ConformanceOut] = Field(default_factory=list, description="Measured against the order.")
    model_sha256: str
    profile_hash: str
    duplicate: bool = Field(False, description="This frame was already judged for this unit; the recorded "
                            "verdict is returned and nothing is stored again.")
    unit_verdict: UnitVerdictOut | None = Field(None, description="Set when this frame completed the unit.")
    queued: bool = Field(False, description="Stored in the station's outbox: the central database is unreachable. "
                         "Durable, and replayed when it is back; ``unit_verdict`` is then the station's provisional "
                         "roll-up, re-checked centrally on replay.")


class ErrorOut(BaseModel):
    detail: str
    error: str


class OrderIn(BaseModel):
    """One order; ``profile`` names a stored profile, or is the profile itself."""

    model_config = _STRICT

    id: str = Field(min_length=1, max_length=128)
    customer_ref: str = Field("", max_length=256)
    product: str = Field("", max_length=256)
    attributes: dict[str, Any] = Field(default_factory=dict)
    due_date: date | None = None
    profile: str | InspectionProfile

    @field_validator("id")
    @classmethod
    def _plain_id(cls, value: str) -> str:
        try:
            return check_identifier("order id", value)
        except IdentifierError as e:
            raise ValueError(str(e)) from e


class OrderBookIn(BaseModel):
    model_config = _STRICT

    profiles: dict[str, InspectionProfile] = Field(default_factory=dict)
    orders: list[OrderIn]


class ImportCounts(BaseModel):
    created: int
    updated: int
    unchanged: int
    profiles_added: int


class ReviewIn(BaseModel):
    model_config = _STRICT

    inspection_id: int = Field(ge=1, le=MAX_ROW_ID)
    decision: Literal["confirm", "false_alarm", "correct"]
    boxes: list[tuple[str, float, float, float, float]] = Field(
        default_factory=list, description="For 'correct': [class, x1, y1, x2, y2] in frame pixels.")
    note: str = Field("", max_length=2000)


class DispositionIn(BaseModel):
    model_config = _STRICT

    disposition: Literal["release", "rework", "scrap"]
    note: str = Field("", max_length=2000)


class PromoteIn(BaseModel):
    model_config = _STRICT

    tolerance: float = Field(0.01, ge=0.0, le=1.0)
    force: bool = False
    reason: str = Field("", max_length=2000)
    dataset: str | None = Field(None, max_length=128, description="Holdout snapshot id (default: the marked one).")
    split: Literal["train", "val"] = "val"


class RollbackIn(BaseModel):
    model_config = _STRICT

    reason: str = Field("", max_length=2000)


class TrainingJobIn(BaseModel):
    model_config = _STRICT

    dataset: str = Field(min_length=1, max_length=128, description="Dataset snapshot id or unique prefix.")
    base: str = Field("yolov8n.yaml", min_length=1, max_length=128,
                      description="Architecture yaml (train from scratch) or a registered model id to fine-tune.")
    epochs: int = Field(50, ge=1, le=1000)
    imgsz: int = Field(416, ge=64, le=1280, multiple_of=32)
    batch: int = Field(16, ge=1, le=256)
    device: str = Field("cpu", pattern=r"^(cpu|[0-9]{1,2})$")
    int8: bool = False


class KeyIn(BaseModel):
    model_config = _STRICT

    role: Literal["camera", "operator", "engineer", "admin"]
    name: str = Field("", max_length=128)


class KeyOut(BaseModel):
    key: str = Field(description="The secret; shown once, only its hash is stored.")
    role: str
    id: int
    name: str
