"""Tables of the results log, as SQLAlchemy 2 typed declarative models.

The schema is owned by the Alembic migrations in ``migrations/versions``; these models are how the code
reads and writes it. ``tests/inspection/store/test_migrations.py`` checks that both agree, so a column
added here without a migration fails a test instead of a station.

Every timestamp is stored timezone-aware and read back as UTC (``UTCDateTime``): SQLite has no time zone
type, and a naive datetime in an audit log is a bug waiting for daylight saving time.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Deterministic constraint names, so later migrations can drop or alter them on every backend."""

ID_LEN = 128
SHA_LEN = 64

BigId = BigInteger().with_variant(Integer(), "sqlite")
"""64-bit ids on PostgreSQL; SQLite only auto-increments a column declared exactly INTEGER."""


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp that always comes back in UTC, whatever the backend stores.

    Naive datetimes are refused on the way in: guessing their zone would silently shift records.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} cannot be stored: make it timezone-aware (UTC)")
        value = value.astimezone(UTC)
        # SQLite stores text without an offset; keep it naive-UTC there so comparisons stay lexical.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(), dict[str, Any]: JSON(), list[str]: JSON()}


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


class RegisteredModelRow(Base):
    """One content-addressed model package (``sha256`` pins the ONNX bytes) and its lifecycle stage.

    ``champion_lock`` is TRUE on the champion and NULL everywhere else: its UNIQUE constraint (NULLs never
    collide) makes two champions impossible even when two promotions race, on SQLite and PostgreSQL alike,
    without a backend-specific partial index.
    """

    __tablename__ = "registered_models"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    sha256: Mapped[str] = mapped_column(String(SHA_LEN), unique=True)
    name: Mapped[str] = mapped_column(String(256), default="")
    stage: Mapped[str] = mapped_column(String(16), index=True)
    champion_lock: Mapped[bool | None] = mapped_column(Boolean, unique=True)
    path: Mapped[str] = mapped_column(Text)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    lineage: Mapped[dict[str, Any]] = mapped_column(default=dict)
    previous_champion_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("registered_models.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelAuditRow(Base):
    """Append-only: one row per stage change (registration included), with the evidence it was based on."""

    __tablename__ = "model_audit"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    model_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("registered_models.id"), index=True)
    from_stage: Mapped[str | None] = mapped_column(String(16))
    to_stage: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(ID_LEN), default="")
    reason: Mapped[str] = mapped_column(Text, default="")
    forced: Mapped[bool] = mapped_column(Boolean, default=False)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    at: Mapped[datetime] = mapped_column(default=utcnow)


class RegistrySettingRow(Base):
    """Small registry-wide settings by key, e.g. ``holdout``: the frozen benchmark snapshot of the gate."""

    __tablename__ = "registry_settings"

    key: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


# -- operator reviews (migration 0003) ----------------------------------------------------------------------
# Append-only like the audit trail above: a changed mind is a new row, so the labels a dataset was built
# from can always be traced back to who decided what, and when.


class ReviewRow(Base):
    """One operator decision about one inspection (``inspection.reviews.Decision``); never updated.

    ``boxes`` is a JSON list of ``[class, x1, y1, x2, y2]`` (only for ``correct``). ``frame_width`` and
    ``frame_height`` are the evidence image's size when the decision was checked against it: inspections do
    not record their frame size, and the dataset builder should not have to trust a later re-read.
    """

    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    inspection_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("inspections.id"), index=True)
    unit_id: Mapped[str] = mapped_column(ForeignKey("units.id"), index=True)
    decision: Mapped[str] = mapped_column(String(16))
    boxes: Mapped[list[Any]] = mapped_column(JSON, default=list)
    frame_width: Mapped[int | None] = mapped_column(Integer)
    frame_height: Mapped[int | None] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(ID_LEN))
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class UnitDispositionRow(Base):
    """What was done with a flagged unit (release, rework or scrap); append-only, the latest row counts."""

    __tablename__ = "unit_dispositions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    unit_id: Mapped[str] = mapped_column(ForeignKey("units.id"), index=True)
    disposition: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(ID_LEN))
    note: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(default=utcnow)


# -- the service (migration 0004) -----------------------------------------------------------------------------


class ApiKeyRow(Base):
    """An API key of one role. Only the sha256 of the key is stored: keys are 256-bit random tokens, so a
    fast hash is enough (nothing to brute-force), and a leaked database holds no usable key."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(ID_LEN))
    role: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(SHA_LEN), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column()


class WebSessionRow(Base):
    """A signed-in review page: the cookie carries a random token, the table its hash and its key."""

    __tablename__ = "web_sessions"

    token_hash: Mapped[str] = mapped_column(String(SHA_LEN), primary_key=True)
    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()


class IdempotencyRow(Base):
    """The first answer to a request carrying an ``Idempotency-Key``, replayed to every retry of it."""

    __tablename__ = "idempotency_keys"

    scope: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    key: Mapped[str] = mapped_column(String(256), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(SHA_LEN))
    status_code: Mapped[int] = mapped_column(Integer)
    response: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TrainingJobRow(Base):
    """A training run started through the service, with its progress as the trainer reports it."""

    __tablename__ = "training_jobs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    progress: Mapped[dict[str, Any]] = mapped_column(default=dict)
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(ID_LEN), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()


# -- conformance and traceability (migration 0006) ------------------------------------------------------------


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


class AuditChainRow(Base):
    """One link of a station's traceability chain: a unit's whole record, as canonical JSON, at one event.

    ``entry_hash = sha256(prev_hash || record_hash)`` and ``record_hash = sha256(record)``: editing, inserting
    or deleting a link, or the rows the record was built from, breaks the chain where ``qcline audit verify``
    can name it. No foreign keys on purpose: a deleted unit must leave its links behind as evidence.
    """

    __tablename__ = "audit_chain"
    __table_args__ = (UniqueConstraint("station_id", "seq"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    station_id: Mapped[str] = mapped_column(String(ID_LEN))
    seq: Mapped[int] = mapped_column(BigInteger)
    unit_id: Mapped[str] = mapped_column(String(ID_LEN), index=True)
    order_id: Mapped[str] = mapped_column(String(ID_LEN), index=True)
    event: Mapped[str] = mapped_column(String(32))
    record: Mapped[str] = mapped_column(Text)
    record_hash: Mapped[str] = mapped_column(String(SHA_LEN))
    prev_hash: Mapped[str] = mapped_column(String(SHA_LEN))
    entry_hash: Mapped[str] = mapped_column(String(SHA_LEN))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditHeadRow(Base):
    """The newest link of each station's chain: a deleted last link is missed without it."""

    __tablename__ = "audit_heads"

    station_id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    entry_hash: Mapped[str] = mapped_column(String(SHA_LEN))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


# -- line triggers (migration 0008) --------------------------------------------------------------------------


class LineTriggerRow(Base):
    """One trigger a line station received ("unit U of order O is here") and how it was answered: also the
    ones refused, unknown, or whose frames never came. No foreign keys on purpose: a trigger for a unit that
    was never recorded (unknown unit, queue full) is a record too."""

    __tablename__ = "line_triggers"
    __table_args__ = (UniqueConstraint("station_id", "trigger_id"),
                      Index("ix_line_triggers_station_id_received_at", "station_id", "received_at"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    station_id: Mapped[str] = mapped_column(String(ID_LEN))
    trigger_id: Mapped[str] = mapped_column(String(ID_LEN))
    channel: Mapped[str] = mapped_column(String(16))
    unit_id: Mapped[str] = mapped_column(String(ID_LEN), index=True)
    order_id: Mapped[str | None] = mapped_column(String(ID_LEN))
    at: Mapped[datetime]
    received_at: Mapped[datetime]
    answered_at: Mapped[datetime]
    outcome: Mapped[str] = mapped_column(String(16))
    verdict: Mapped[str | None] = mapped_column(String(16))
    error: Mapped[str] = mapped_column(Text, default="")
    latency_ms: Mapped[float] = mapped_column(Float)
    frames: Mapped[dict[str, Any]] = mapped_column(default=dict)
