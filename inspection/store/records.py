"""What the results store's read side hands out: frozen records, not dicts.

``ResultsStore`` and ``ReviewService`` build these from their rows; the services, the HTTP answers
(``api/http/schemas``, ``from_attributes``), the CLI and the certificate read them by attribute. Each has
``to_json`` for the CLI's ``--json`` (the same keys, in the same order, as the dicts it replaces). Values
stay as stored (times as ISO text, verdicts as their names), so what goes out is what the database holds;
the checks on construction catch a row that no longer means anything (an unknown verdict or status).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from inspection.errors import StoreError
from inspection.profiles import Order
from inspection.store.tables.results import ConformanceResultRow, DetectionRow, InspectionRow
from inspection.types import Verdict

UNIT_OPEN, UNIT_CLOSED = "open", "closed"
_VERDICTS = frozenset(v.value for v in Verdict)


def iso_time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _check_verdict(what: str, value: str | None, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if value not in _VERDICTS:
        raise StoreError(f"{what} has verdict {value!r}, not one of {sorted(_VERDICTS)}")


@dataclass(frozen=True)
class StoredFinding:
    """One finding of an inspection as recorded (unrounded), with what the order's rule made of it."""

    class_name: str
    confidence: float
    box: tuple[float, float, float, float]
    """``(x1, y1, x2, y2)`` in pixels of the frame."""
    outcome: str
    rule: str

    def __post_init__(self) -> None:
        _check_verdict(f"a finding of class {self.class_name!r}", self.outcome)
        if len(self.box) != 4:
            raise StoreError(f"a finding of class {self.class_name!r} has a box of {len(self.box)} values, not 4")

    @classmethod
    def of(cls, row: DetectionRow) -> StoredFinding:
        return cls(row.class_name, row.confidence, (row.x1, row.y1, row.x2, row.y2), row.outcome, row.rule)

    def to_json(self) -> dict[str, Any]:
        return {"class": self.class_name, "confidence": self.confidence, "box": list(self.box),
                "outcome": self.outcome, "rule": self.rule}


@dataclass(frozen=True)
class StoredConformance:
    """One conformance rule measured on an inspection, as recorded."""

    kind: str
    name: str
    outcome: str
    measured: str
    expected: str
    tolerance: str
    deviation: float | None
    reason: str
    values: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, row: ConformanceResultRow) -> StoredConformance:
        return cls(row.kind, row.name, row.outcome, row.measured, row.expected, row.tolerance, row.deviation,
                   row.reason, dict(row.values or {}))

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "outcome": self.outcome, "measured": self.measured,
                "expected": self.expected, "tolerance": self.tolerance, "deviation": self.deviation,
                "reason": self.reason, "values": dict(self.values)}


@dataclass(frozen=True)
class InspectionRecord:
    """The recorded judgement of one frame of a unit (``ResultsStore.find_inspection``): the answer to a frame
    sent twice."""

    id: int
    unit_id: str
    order_id: str
    camera_id: str
    captured_at: str | None
    frame_sha256: str
    verdict: str
    reasons: tuple[str, ...]
    findings: tuple[StoredFinding, ...]
    model_sha256: str
    conformance: tuple[StoredConformance, ...]
    engine: str
    precision: str
    profile_hash: str

    def __post_init__(self) -> None:
        _check_verdict(f"inspection {self.id}", self.verdict)

    @classmethod
    def of(cls, row: InspectionRow, findings: list[DetectionRow],
           conformance: list[ConformanceResultRow]) -> InspectionRecord:
        return cls(row.id, row.unit_id, row.order_id, row.camera_id, iso_time(row.captured_at), row.frame_sha256,
                   row.verdict, tuple(row.reasons or ()), tuple(StoredFinding.of(d) for d in findings),
                   row.model_sha256, tuple(StoredConformance.of(c) for c in conformance), row.engine,
                   row.precision, row.profile_hash)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "unit_id": self.unit_id, "order_id": self.order_id, "camera_id": self.camera_id,
                "captured_at": self.captured_at, "frame_sha256": self.frame_sha256, "verdict": self.verdict,
                "reasons": list(self.reasons), "findings": [f.to_json() for f in self.findings],
                "model_sha256": self.model_sha256, "conformance": [c.to_json() for c in self.conformance],
                "engine": self.engine, "precision": self.precision, "profile_hash": self.profile_hash}


@dataclass(frozen=True)
class FrameRecord:
    """One frame of a unit's record: its judgement, the versions that made it, where its evidence is."""

    id: int
    camera_id: str
    captured_at: str | None
    frame_sha256: str
    verdict: str
    reasons: tuple[str, ...]
    findings: tuple[StoredFinding, ...]
    conformance: tuple[StoredConformance, ...]
    model_sha256: str
    engine: str
    precision: str
    profile_hash: str
    error: str
    source: str
    evidence_path: str | None
    """The recorded evidence file (``None`` once a PASS frame's evidence is released)."""
    recorded_at: str | None

    def __post_init__(self) -> None:
        _check_verdict(f"inspection {self.id}", self.verdict)

    @classmethod
    def of(cls, row: InspectionRow, findings: list[DetectionRow],
           conformance: list[ConformanceResultRow]) -> FrameRecord:
        return cls(row.id, row.camera_id, iso_time(row.captured_at), row.frame_sha256, row.verdict,
                   tuple(row.reasons or ()), tuple(StoredFinding.of(d) for d in findings),
                   tuple(StoredConformance.of(c) for c in conformance), row.model_sha256, row.engine,
                   row.precision, row.profile_hash, row.error, row.source, row.evidence_path,
                   iso_time(row.created_at))

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "camera_id": self.camera_id, "captured_at": self.captured_at,
                "frame_sha256": self.frame_sha256, "verdict": self.verdict, "reasons": list(self.reasons),
                "findings": [f.to_json() for f in self.findings],
                "conformance": [c.to_json() for c in self.conformance], "model_sha256": self.model_sha256,
                "engine": self.engine, "precision": self.precision, "profile_hash": self.profile_hash,
                "error": self.error, "source": self.source, "evidence_path": self.evidence_path,
                "recorded_at": self.recorded_at}


@dataclass(frozen=True)
class ProfileRef:
    """Which profile version an order is inspected against now: its name and content hash."""

    name: str
    hash: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "hash": self.hash}


@dataclass(frozen=True)
class UnitRecord:
    """Everything recorded about one unit (``ResultsStore.unit_record``): the answer to "why did unit X fail?"."""

    unit_id: str
    order_id: str
    status: str
    verdict: str | None
    reasons: tuple[str, ...]
    missing_views: tuple[str, ...]
    complete: bool
    created_at: str | None
    closed_at: str | None
    updated_at: str | None
    order: Order
    profile: ProfileRef
    """The order's current profile (each frame names the version that judged it: ``FrameRecord.profile_hash``)."""
    model_sha256s: tuple[str, ...]
    """Every model that judged a frame of the unit, sorted."""
    frames: tuple[FrameRecord, ...]
    """Oldest first."""

    def __post_init__(self) -> None:
        if self.status not in (UNIT_OPEN, UNIT_CLOSED):
            raise StoreError(f"unit {self.unit_id!r} has status {self.status!r}, not {UNIT_OPEN} or {UNIT_CLOSED}")
        _check_verdict(f"unit {self.unit_id!r}", self.verdict, optional=True)

    def to_json(self) -> dict[str, Any]:
        return {"unit_id": self.unit_id, "order_id": self.order_id, "status": self.status, "verdict": self.verdict,
                "reasons": list(self.reasons), "missing_views": list(self.missing_views), "complete": self.complete,
                "created_at": self.created_at, "closed_at": self.closed_at, "updated_at": self.updated_at,
                "order": self.order.model_dump(mode="json"), "profile": self.profile.to_json(),
                "model_sha256s": list(self.model_sha256s), "frames": [f.to_json() for f in self.frames]}


@dataclass(frozen=True)
class SourceStats:
    """The latest snapshot of one source's counters (``ResultsStore.source_stats``)."""

    source: str
    camera_id: str
    frames_read: int
    frames_failed: int
    frames_dropped: int
    reconnects: int
    last_error: str
    recorded_at: str | None

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "camera_id": self.camera_id, "frames_read": self.frames_read,
                "frames_failed": self.frames_failed, "frames_dropped": self.frames_dropped,
                "reconnects": self.reconnects, "last_error": self.last_error, "recorded_at": self.recorded_at}


def check_counts(what: str, **counts: int) -> None:
    """A count read back below zero means the query, not the line, is wrong."""
    negative = {name: n for name, n in counts.items() if n < 0}
    if negative:
        raise StoreError(f"{what} has negative counts {negative}")


@dataclass(frozen=True)
class ClassFindings:
    """Findings of one defect class in a report: those the order's rule decided (``counted``: outcome PASS or
    FAIL), those in its review band (``uncertain``: outcome REVIEW), and how many frames and units they were
    found on."""

    class_name: str
    counted: int
    uncertain: int
    frames: int
    units: int

    def __post_init__(self) -> None:
        check_counts(f"the findings of class {self.class_name!r}", counted=self.counted, uncertain=self.uncertain,
                     frames=self.frames, units=self.units)

    def to_json(self) -> dict[str, Any]:
        return {"class": self.class_name, "counted": self.counted, "uncertain": self.uncertain,
                "frames": self.frames, "units": self.units}


@dataclass(frozen=True)
class OrderVerdicts:
    """One order's units and their verdicts (``ResultsStore.report``)."""

    order_id: str
    customer_ref: str
    units: int
    passed: int
    """Units whose verdict is PASS."""
    review: int
    """Units whose verdict is REVIEW."""
    failed: int
    """Units whose verdict is FAIL."""
    open: int
    """Units still open (with or without a verdict so far)."""

    def __post_init__(self) -> None:
        check_counts(f"order {self.order_id!r}", units=self.units, passed=self.passed, review=self.review,
                     failed=self.failed, open=self.open)

    def to_json(self) -> dict[str, Any]:
        return {"order_id": self.order_id, "customer_ref": self.customer_ref, "units": self.units,
                "PASS": self.passed, "REVIEW": self.review, "FAIL": self.failed, "open": self.open}


@dataclass(frozen=True)
class StoreReport:
    """Counts over everything recorded (``ResultsStore.report``): per order by id, per defect class by name.
    The shift report with filters, dispositions and yields is ``inspection.store.shift_report``."""

    per_order: tuple[OrderVerdicts, ...]
    per_class: tuple[ClassFindings, ...]

    def to_json(self) -> dict[str, Any]:
        return {"per_order": [r.to_json() for r in self.per_order], "per_class": [r.to_json() for r in self.per_class]}


CALIBRATION_KINDS = ("colour", "scale", "label")


@dataclass(frozen=True)
class CalibrationRecord:
    """One camera calibration as recorded: ``values`` by kind (``colour``: ``gains``; ``scale``: ``px_per_mm``,
    ``method``; ``label``: the ``LabelSettings``), checked when it was recorded."""

    id: int
    camera_id: str
    kind: str
    values: Mapping[str, Any]
    actor: str
    note: str
    created_at: str | None

    def __post_init__(self) -> None:
        if self.kind not in CALIBRATION_KINDS:
            raise StoreError(f"calibration {self.id} of camera {self.camera_id!r} has kind {self.kind!r}, not one "
                             f"of {CALIBRATION_KINDS}")

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "camera_id": self.camera_id, "kind": self.kind, "values": dict(self.values),
                "actor": self.actor, "note": self.note, "created_at": self.created_at}


__all__ = ["CALIBRATION_KINDS", "UNIT_CLOSED", "UNIT_OPEN", "CalibrationRecord", "ClassFindings", "FrameRecord",
           "InspectionRecord", "OrderVerdicts", "ProfileRef", "SourceStats", "StoreReport", "StoredConformance",
           "StoredFinding", "UnitRecord", "check_counts", "iso_time"]
