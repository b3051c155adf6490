"""Wire schemas of the HTTP API (pydantic). The runtime's records stay in ``inspection/``; these are
what crosses the network, documented in the OpenAPI schema."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from inspection.ids import IdentifierError, check_identifier
from inspection.profiles import InspectionProfile
from inspection.store.records import FrameRecord, UnitRecord
from inspection.store.reviews import DispositionRecord, ReviewRecord

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
    """The one error body (``api.http.errors.error_body``) of every 4xx / 5xx answer."""

    detail: str = Field(description="Why, in one line (server paths redacted).")
    error: str = Field(description="The kind of error: the exception's name, e.g. NotFoundError.")
    problems: list[str] | None = Field(None, description="Each invalid field (request validation errors only).")


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each status it may answer with, all described by ``ErrorOut``. 401 / 403 come
    from the gatekeeper, 413 from the body limit, 422 from validation and 503 from an unreachable store on every
    route that needs a key, so they are always included."""
    described = {400: "The request is wrong in a way the schema cannot say", 401: "No valid API key or session",
                 403: "The caller's role may not do this", 404: "Not found", 409: "Conflicts with the current state",
                 413: "Request body too large", 415: "Unsupported media type",
                 422: "Invalid input (each problem named)", 503: "Not ready, overloaded or the store is unreachable"}
    return {code: {"model": ErrorOut, "description": described[code]}
            for code in sorted({401, 403, 413, 422, 503, *codes})}


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
    """Never ``test``: a promotion is a choice, and the test split is never used for one."""


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


# -- answers ----------------------------------------------------------------------------------------------
# Each JSON answer of the API is one of these; the store and services hand over their own typed records (frozen
# dataclasses, read here by attribute) or plain rows, and the route's ``response_model`` says what goes out.

_READ = ConfigDict(from_attributes=True, populate_by_name=True)


class KeyRecordOut(BaseModel):
    """An API key as stored (never its secret)."""

    model_config = _READ

    id: int
    name: str
    role: str
    prefix: str = Field(description="The secret's first characters, to recognise it.")
    created_at: str
    revoked_at: str | None


class HealthOut(BaseModel):
    status: Literal["ok"]


class OutboxOut(BaseModel):
    model_config = _READ

    backlog: int
    oldest_age_s: float | None
    size_bytes: int
    max_bytes: int
    dead: int
    alarm: str


class StationStateOut(BaseModel):
    status: Literal["ok", "degraded"]
    commit_queue: int
    commit_stalled_s: float
    outbox: OutboxOut | None = Field(None, description="Only on a station with a local outbox.")
    reason: str | None = Field(None, description="Why the station is degraded.")
    alarm: str | None = Field(None, description="The outbox's alarm, when it raised one.")


class ModelStateOut(BaseModel):
    """The model this service runs; before it has one, only ``ready`` and ``error``."""

    ready: bool
    error: str | None = Field(None, description="Why no model is loaded (only before one is).")
    sha256: str | None = None
    name: str | None = None
    engine: str | None = None
    precision: str | None = None
    swaps: int | None = None
    watcher_error: str | None = None


class ReadyOut(ModelStateOut):
    station: StationStateOut
    status: Literal["ok", "degraded"] | None = Field(None, description="Set once ready.")


class StationOut(ModelStateOut):
    queue_depth: int
    batches: int


class OrderOut(BaseModel):
    model_config = _READ

    id: str
    customer_ref: str
    product: str
    attributes: dict[str, Any]
    due_date: date | None
    profile: str = Field(description="Name of the inspection profile.")


class OrderDetailOut(OrderOut):
    profile_hash: str = Field(description="Content hash of the profile version new frames are judged against.")
    profile_spec: dict[str, Any] = Field(description="That profile, canonical JSON.")


class ProfileOut(BaseModel):
    """A profile version: its content hash and its canonical JSON (the fields of ``InspectionProfile``)."""

    model_config = ConfigDict(extra="allow")

    hash: str


class UnitSummaryOut(BaseModel):
    model_config = _READ

    unit_id: str
    order_id: str
    status: str
    verdict: str | None
    complete: bool
    missing_views: list[str]
    frames: int
    created_at: str | None
    closed_at: str | None


class RecordedFinding(BaseModel):
    """A finding as recorded (unrounded)."""

    model_config = _READ

    class_: str = Field(alias="class", validation_alias=AliasChoices("class", "class_name"))
    confidence: float
    box: list[float] = Field(description="[x1, y1, x2, y2] in pixels of the uploaded image.")
    outcome: str
    rule: str


class ReviewOut(BaseModel):
    model_config = _READ

    id: int
    inspection_id: int
    unit_id: str
    decision: str
    boxes: list[list[str | float]] = Field(description="[class, x1, y1, x2, y2] per box, in frame pixels.")
    frame_size: list[int] | None = Field(description="[width, height] of the evidence frame, when it was read.")
    actor: str
    note: str
    created_at: str | None
    duplicate: bool = Field(description="The same decision was already the latest: nothing stored again.")


class DispositionOut(BaseModel):
    model_config = _READ

    id: int
    unit_id: str
    disposition: str
    actor: str
    note: str
    at: str | None


class DispositionRecordedOut(DispositionOut):
    verdict: str | None = Field(description="The unit's verdict when it was dispositioned.")


class QueueItemOut(BaseModel):
    model_config = _READ

    unit_id: str
    order_id: str
    customer_ref: str
    product: str
    due_date: str | None
    verdict: str | None
    reasons: list[str]
    status: str
    flagged_frames: int
    reviewed_frames: int
    updated_at: str | None
    frames: int
    unit_level: bool = Field(description="Failed on a unit-level rule: every frame is the operator's to see.")
    to_review: int
    cameras: list[str]
    classes: list[str]
    first_captured: str | None
    last_captured: str | None
    thumbnail_id: int | None
    missing_views: list[str]


class UnitFrameOut(BaseModel):
    model_config = _READ

    id: int
    camera_id: str
    captured_at: str | None
    frame_sha256: str
    verdict: str
    reasons: list[str]
    findings: list[RecordedFinding]
    conformance: list[ConformanceOut]
    model_sha256: str
    engine: str
    precision: str
    profile_hash: str
    error: str
    source: str
    recorded_at: str | None
    reviews: list[ReviewOut]
    evidence_url: str | None = Field(description="Where to fetch the frame, while its evidence is kept.")

    @classmethod
    def of(cls, frame: FrameRecord, reviews: Sequence[ReviewRecord]) -> UnitFrameOut:
        """The recorded frame with its reviews, and the URL of its evidence instead of the server's path."""
        recorded = {name: getattr(frame, name) for name in cls.model_fields.keys() - {"reviews", "evidence_url"}}
        return cls.model_validate({**recorded, "reviews": reviews,
                                   "evidence_url": f"/v1/inspections/{frame.id}/image" if frame.evidence_path
                                   else None})


class UnitProfileOut(BaseModel):
    model_config = _READ

    name: str
    hash: str
    spec: dict[str, Any] | None = Field(description="The profile's canonical JSON (null if it is gone).")


class UnitRecordOut(BaseModel):
    model_config = _READ

    unit_id: str
    order_id: str
    status: str
    verdict: str | None
    reasons: list[str]
    missing_views: list[str]
    complete: bool
    created_at: str | None
    closed_at: str | None
    updated_at: str | None
    order: OrderOut
    profile: UnitProfileOut
    model_sha256s: list[str]
    frames: list[UnitFrameOut]
    dispositions: list[DispositionOut]

    @classmethod
    def of(cls, record: UnitRecord, reviews: Mapping[int, Sequence[ReviewRecord]],
           dispositions: Sequence[DispositionRecord], spec: dict[str, Any] | None) -> UnitRecordOut:
        """The unit's record with each frame's reviews (by inspection id), the unit's dispositions and its
        profile's canonical JSON (``None`` when that version is no longer stored)."""
        recorded = {name: getattr(record, name) for name in cls.model_fields.keys() - {"profile", "frames",
                                                                                       "dispositions"}}
        return cls.model_validate({
            **recorded, "profile": UnitProfileOut(name=record.profile.name, hash=record.profile.hash, spec=spec),
            "frames": [UnitFrameOut.of(f, reviews.get(f.id, ())) for f in record.frames],
            "dispositions": dispositions})


class ModelOut(BaseModel):
    """A registered model package."""

    model_config = _READ

    id: int
    stage: str
    sha256: str
    name: str
    path: str
    metrics: dict[str, Any]
    lineage: dict[str, Any]
    created_at: str
    updated_at: str
    previous_champion_id: int | None


class ModelAuditOut(BaseModel):
    model_config = _READ

    id: int
    model_id: int
    from_stage: str | None
    to_stage: str
    actor: str
    reason: str
    forced: bool
    metrics: dict[str, Any]
    at: str


class ModelDetailOut(ModelOut):
    audit: list[ModelAuditOut]


class GateCheckOut(BaseModel):
    model_config = _READ

    name: str
    candidate: float | None
    champion: float | None
    passed: bool
    detail: str


class PromotionOut(BaseModel):
    model_config = _READ

    model_id: int
    sha256: str
    promoted: bool
    forced: bool
    previous_champion_id: int | None
    tolerance: float
    checks: list[GateCheckOut]
    reason: str
    holdout_snapshot_id: str | None


class SplitCounts(BaseModel):
    train: int
    val: int
    test: int | None = Field(None, description="Only for snapshots with a test split (never used for any choice).")


class SplitRuleOut(BaseModel):
    val_fraction: float
    test_fraction: float
    seed: str


class DatasetOut(BaseModel):
    id: str
    created_at: str
    source: str
    parent: str | None
    images: SplitCounts
    classes: list[str]
    split_origin: str
    split_rule: SplitRuleOut | None = None


class DatasetDetailOut(DatasetOut):
    boxes_per_class: dict[str, dict[str, int]] = Field(description="Per split, boxes of each class.")


class TrainingJobOut(BaseModel):
    model_config = _READ

    id: int
    status: str
    params: dict[str, Any]
    progress: dict[str, Any]
    result: dict[str, Any]
    error: str
    actor: str
    created_at: str
    started_at: str | None
    finished_at: str | None


class TrainingJobDetailOut(TrainingJobOut):
    log_tail: list[str] = Field(description="The trainer's last log lines (server paths redacted).")
