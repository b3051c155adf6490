"""Tables of the inspection results: profiles, orders, units, inspections, their findings, conformance
results, per-source statistics and camera calibrations."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from inspection.store.tables.base import ID_LEN, SHA_LEN, Base, BigId, utcnow


class ProfileRow(Base):
    """An inspection profile version, named by the sha256 of its canonical form (never updated)."""

    __tablename__ = "profiles"

    hash: Mapped[str] = mapped_column(String(SHA_LEN), primary_key=True)
    name: Mapped[str] = mapped_column(String(ID_LEN), index=True)
    body: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OrderRow(Base):
    __tablename__ = "orders"

    id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    customer_ref: Mapped[str] = mapped_column(String(256), default="")
    product: Mapped[str] = mapped_column(String(256), default="")
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    due_date: Mapped[date | None] = mapped_column(Date)
    profile_name: Mapped[str] = mapped_column(String(ID_LEN))
    profile_hash: Mapped[str] = mapped_column(ForeignKey("profiles.hash"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class UnitRow(Base):
    """One built unit of an order; ``verdict`` stays NULL until its views roll up or it is closed."""

    __tablename__ = "units"

    id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="open")
    verdict: Mapped[str | None] = mapped_column(String(16))
    reasons: Mapped[list[str]] = mapped_column(default=list)
    missing_views: Mapped[list[str]] = mapped_column(default=list)
    complete: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class InspectionRow(Base):
    """One frame result. UNIQUE(unit, camera, frame sha256): replaying a frame never duplicates it."""

    __tablename__ = "inspections"
    __table_args__ = (
        UniqueConstraint("unit_id", "camera_id", "frame_sha256"),
        Index("ix_inspections_order_id_verdict", "order_id", "verdict"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    unit_id: Mapped[str] = mapped_column(ForeignKey("units.id"))
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"))
    camera_id: Mapped[str] = mapped_column(String(ID_LEN))
    captured_at: Mapped[datetime]
    frame_sha256: Mapped[str] = mapped_column(String(SHA_LEN))
    verdict: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[list[str]] = mapped_column(default=list)
    model_sha256: Mapped[str] = mapped_column(String(SHA_LEN), default="")
    profile_hash: Mapped[str] = mapped_column(String(SHA_LEN), default="")
    error: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(Text, default="")
    evidence_path: Mapped[str | None] = mapped_column(Text)
    evidence_sha256: Mapped[str | None] = mapped_column(String(SHA_LEN), index=True)
    n_findings: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # migration 0009: the engine and precision that ran the model, beside model_sha256
    engine: Mapped[str] = mapped_column(String(32), default="", server_default="")
    precision: Mapped[str] = mapped_column(String(16), default="", server_default="")


class DetectionRow(Base):
    """One judged finding of an inspection (a ``DefectFinding``), in the order the rules produced it."""

    __tablename__ = "detections"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    inspection_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("inspections.id", ondelete="CASCADE"),
        index=True)
    class_name: Mapped[str] = mapped_column(String(ID_LEN), index=True)
    confidence: Mapped[float] = mapped_column(Float)
    x1: Mapped[float] = mapped_column(Float)
    y1: Mapped[float] = mapped_column(Float)
    x2: Mapped[float] = mapped_column(Float)
    y2: Mapped[float] = mapped_column(Float)
    outcome: Mapped[str] = mapped_column(String(16))
    rule: Mapped[str] = mapped_column(Text, default="")


class SourceStatsRow(Base):
    """A snapshot of a frame source's counters; rows accumulate so a trend can be read back."""

    __tablename__ = "source_stats"
    __table_args__ = (Index("ix_source_stats_source_camera", "source", "camera_id", "recorded_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(512))
    camera_id: Mapped[str] = mapped_column(String(ID_LEN))
    frames_read: Mapped[int] = mapped_column(BigInteger, default=0)
    frames_failed: Mapped[int] = mapped_column(BigInteger, default=0)
    frames_dropped: Mapped[int] = mapped_column(BigInteger, default=0)
    reconnects: Mapped[int] = mapped_column(BigInteger, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)


# -- model registry (migration 0002) ------------------------------------------------------------------------
# Kept in the results database on purpose: an inspection's ``model_sha256`` and the registry row that says
# when that model became champion, and on whose word, then live side by side for an auditor.


class ConformanceResultRow(Base):
    """One conformance rule measured on one inspection (a ``ConformanceResult``)."""

    __tablename__ = "conformance_results"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    inspection_id: Mapped[int] = mapped_column(BigId, ForeignKey("inspections.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    measured: Mapped[str] = mapped_column(Text)
    expected: Mapped[str] = mapped_column(Text)
    tolerance: Mapped[str] = mapped_column(Text)
    deviation: Mapped[float | None] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(Text)
    values: Mapped[dict[str, Any]] = mapped_column(default=dict)


class CameraCalibrationRow(Base):
    """A camera's colour (white balance) or scale (px/mm) calibration; append-only, the latest per kind counts."""

    __tablename__ = "camera_calibrations"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    camera_id: Mapped[str] = mapped_column(String(ID_LEN), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    values: Mapped[dict[str, Any]] = mapped_column(default=dict)
    actor: Mapped[str] = mapped_column(String(ID_LEN), default="")
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
