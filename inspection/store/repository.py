"""``ResultsStore``: the results log of a station, one API over SQLite and PostgreSQL.

Everything a unit's verdict depends on is recorded with the version that decided it: the model's sha256
and the profile's content hash on each inspection, the profile body stored by hash. An auditor can
therefore reconstruct months later why unit X failed, even after the orders file or the model changed.

Writes are idempotent where the line can replay data: re-importing an orders file changes nothing,
and a frame recorded again for the same unit and camera (a restarted source, a retried batch) is
skipped by the UNIQUE(unit_id, camera_id, frame_sha256) constraint instead of counted twice.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, case, distinct, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.schema import Table

from inspection.errors import ConflictError, NotFoundError, StoreError
from inspection.hashing import sha256_bytes
from inspection.profiles import InspectionProfile, Order, OrderBook
from inspection.store.db import Database, describe, open_database
from inspection.store.evidence import EvidenceStore, sha_of_path
from inspection.store.models import (
    DetectionRow,
    InspectionRow,
    OrderRow,
    ProfileRow,
    SourceStatsRow,
    UnitRow,
    utcnow,
)
from inspection.types import (
    DefectFinding,
    Frame,
    FrameFailure,
    FrameResult,
    FrameVerdict,
    UnitVerdict,
    Verdict,
)

log = logging.getLogger(__name__)

FAILURE_KEY_PREFIX = "failure:"
"""Prefix of the ``frame_sha256`` key of a frame that could not be read (it has no content to hash)."""

UNIT_OPEN, UNIT_CLOSED = "open", "closed"


def _insert_ignore(dialect: str, table: Table, index_elements: Sequence[str]) -> Insert:
    """``INSERT .. ON CONFLICT (..) DO NOTHING`` for the backend: atomic, unlike a pre-check, when two
    processes write the same row at once."""
    if dialect == "postgresql":
        return pg_insert(table).on_conflict_do_nothing(index_elements=list(index_elements))
    if dialect == "sqlite":
        return sqlite_insert(table).on_conflict_do_nothing(index_elements=list(index_elements))
    raise StoreError(f"unsupported database backend {dialect!r}: use SQLite or PostgreSQL")


def frame_key(result: FrameResult) -> str:
    """The value of ``inspections.frame_sha256`` for ``result``.

    A decoded frame is named by its content. A frame that failed to read has none, so it is named by
    what identifies the failure (source, position, time, error): replaying it is still a no-op, while two
    different failures of one camera are both kept.
    """
    if result.verdict.frame_sha256:
        return result.verdict.frame_sha256
    frame = result.frame
    if isinstance(frame, Frame):
        return frame.sha256
    text = "\0".join(["failure", frame.source, str(frame.source_seq), frame.captured_at.isoformat(),
                      frame.error, frame.camera_id])
    return FAILURE_KEY_PREFIX + sha256_bytes(text.encode())[: 64 - len(FAILURE_KEY_PREFIX)]


def iso_time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _order_from_row(row: OrderRow) -> Order:
    return Order(id=row.id, customer_ref=row.customer_ref, product=row.product,
                 attributes=dict(row.attributes or {}), due_date=row.due_date, profile=row.profile_name)


def _profile_from_row(row: ProfileRow) -> InspectionProfile:
    try:
        return InspectionProfile.model_validate(row.body)
    except ValueError as e:
        raise StoreError(f"stored profile {row.hash} ({row.name}) no longer validates: {e}") from e


def finding_json(d: DetectionRow) -> dict[str, Any]:
    return {"class": d.class_name, "confidence": d.confidence, "box": [d.x1, d.y1, d.x2, d.y2],
            "outcome": d.outcome, "rule": d.rule}


def findings_of(session: Session, inspection_ids: Sequence[int]) -> dict[int, list[DetectionRow]]:
    """The findings of many inspections, grouped by inspection id, in as few queries as the driver allows."""
    grouped: dict[int, list[DetectionRow]] = defaultdict(list)
    ids = sorted(set(inspection_ids))
    for start in range(0, len(ids), 500):  # stay far below any bound-parameter limit
        for d in session.scalars(select(DetectionRow).where(DetectionRow.inspection_id.in_(ids[start:start + 500]))
                                 .order_by(DetectionRow.id)):
            grouped[d.inspection_id].append(d)
    return grouped


class ResultsStore(Database):
    """The results log: orders and profiles, units, per-frame inspections, findings and source stats.

    Thread-safe: each call uses its own session/connection from the engine's pool, so the batched writer
    thread and the API's request threads can share one store.
    """

    label = "results database"

    def __init__(self, engine: Engine, evidence: EvidenceStore) -> None:
        super().__init__(engine)
        self.evidence = evidence

    @classmethod
    def open(cls, url: str, evidence_dir: Path) -> ResultsStore:
        """Connect to ``url``, migrate it to head, and keep evidence frames under ``evidence_dir``."""
        return cls(open_database(url), EvidenceStore(Path(evidence_dir)))

    def __repr__(self) -> str:
        return f"ResultsStore({describe(self.engine.url)}, evidence={self.evidence.root})"

    # -- orders and profiles ---------------------------------------------------------------------------

    def import_order_book(self, book: OrderBook) -> dict[str, int]:
        """Store the book's profiles (by content hash) and create or update its orders, in one transaction.

        Returns ``{"created", "updated", "unchanged", "profiles_added"}``. Re-importing the same file is a
        no-op. An order whose profile changed points at the new hash from now on, while its earlier
        inspections keep the hash they were judged with. Orders absent from the book are left alone:
        an orders file may list only the current week.
        """
        counts = {"created": 0, "updated": 0, "unchanged": 0, "profiles_added": 0}
        now = utcnow()
        with self._session("importing orders") as session:
            hashes: dict[str, str] = {}
            for name, profile in book.profiles.items():
                digest = profile.content_hash
                hashes[name] = digest
                stmt = _insert_ignore(self.dialect, ProfileRow.__table__, ["hash"]).values(  # type: ignore[arg-type]
                    hash=digest, name=profile.name, body=profile.canonical(), created_at=now
                ).returning(ProfileRow.hash)
                counts["profiles_added"] += session.execute(stmt).scalar() is not None
            for order in book.orders:
                values = order.model_dump(mode="json")
                fields = {"customer_ref": order.customer_ref, "product": order.product,
                          "attributes": values["attributes"], "due_date": order.due_date,
                          "profile_name": order.profile, "profile_hash": hashes[order.profile]}
                row = session.get(OrderRow, order.id)
                if row is None:
                    session.add(OrderRow(id=order.id, created_at=now, updated_at=now, **fields))
                    counts["created"] += 1
                elif any(getattr(row, k) != v for k, v in fields.items()):
                    if row.profile_hash != fields["profile_hash"]:
                        log.info("order %s: profile %s changed %s -> %s", order.id, order.profile,
                                 row.profile_hash[:12], str(fields["profile_hash"])[:12])
                    for k, v in fields.items():
                        setattr(row, k, v)
                    row.updated_at = now
                    counts["updated"] += 1
                else:
                    counts["unchanged"] += 1
        log.info("imported order book: %s", counts)
        return counts

    def get_order(self, order_id: str) -> tuple[Order, InspectionProfile]:
        """The order and the profile version it is currently inspected against."""
        with self._session("reading an order") as session:
            row = session.get(OrderRow, order_id)
            if row is None:
                raise NotFoundError(f"order {order_id!r} is not known: import the orders file that lists it")
            profile = session.get(ProfileRow, row.profile_hash)
            if profile is None:  # impossible with foreign keys on; say so clearly if it happens anyway
                raise StoreError(f"order {order_id!r} names missing profile {row.profile_hash}")
            return _order_from_row(row), _profile_from_row(profile)

    def list_orders(self) -> list[Order]:
        with self._session("listing orders") as session:
            return [_order_from_row(r) for r in session.scalars(select(OrderRow).order_by(OrderRow.id))]

    def get_profile(self, profile_hash: str) -> InspectionProfile:
        """A profile version by content hash: the exact rules an inspection was judged with."""
        with self._session("reading a profile") as session:
            row = session.get(ProfileRow, profile_hash)
            if row is None:
                raise NotFoundError(f"profile {profile_hash!r} is not stored")
            return _profile_from_row(row)

    # -- units ------------------------------------------------------------------------------------------

    def ensure_unit(self, unit_id: str, order_id: str) -> bool:
        """Create the open unit ``unit_id`` of ``order_id`` unless it exists; ``True`` if created.

        Raises ``NotFoundError`` for an unknown order and ``ConflictError`` if the unit is recorded under
        another order: a serial number scanned against the wrong order must stop, not merge two units.
        """
        if not unit_id or not order_id:
            raise ValueError("unit_id and order_id must be non-empty")
        with self._session("creating a unit") as session:
            created = self._ensure_units(session, {unit_id: order_id})
        if created:
            log.debug("unit %s of order %s opened", unit_id, order_id)
        return bool(created)

    def _ensure_units(self, session: Session, wanted: Mapping[str, str]) -> int:
        """Create the missing units of ``wanted`` (unit id -> order id) in ``session``'s transaction."""
        existing = {u: o for u, o in session.execute(
            select(UnitRow.id, UnitRow.order_id).where(UnitRow.id.in_(list(wanted))))}
        for unit_id, order_id in existing.items():
            if wanted[unit_id] != order_id:
                raise ConflictError(f"unit {unit_id!r} belongs to order {order_id!r}, "
                                    f"not {wanted[unit_id]!r}")
        missing = {u: o for u, o in wanted.items() if u not in existing}
        if not missing:
            return 0
        orders = set(session.scalars(select(OrderRow.id).where(OrderRow.id.in_(set(missing.values())))))
        unknown = sorted(set(missing.values()) - orders)
        if unknown:
            raise NotFoundError(f"order {unknown[0]!r} is not known: import the orders file that lists it"
                                + (f" (also unknown: {unknown[1:]})" if len(unknown) > 1 else ""))
        now = utcnow()
        stmt = _insert_ignore(self.dialect, UnitRow.__table__, ["id"])  # type: ignore[arg-type]
        session.execute(stmt, [
            {"id": u, "order_id": o, "status": UNIT_OPEN, "verdict": None, "reasons": [], "missing_views": [],
             "complete": False, "created_at": now, "closed_at": None, "updated_at": now}
            for u, o in missing.items()])
        # Another process may have created one of them meanwhile, possibly under another order.
        raced = {u: o for u, o in session.execute(
            select(UnitRow.id, UnitRow.order_id).where(UnitRow.id.in_(list(missing))))}
        for unit_id, order_id in raced.items():
            if missing[unit_id] != order_id:
                raise ConflictError(f"unit {unit_id!r} belongs to order {order_id!r}, "
                                    f"not {missing[unit_id]!r}")
        return len(missing)

    def record_unit_verdict(self, uv: UnitVerdict, *, closed: bool) -> None:
        """Store a unit's rolled-up verdict; ``closed=True`` also closes it (and stamps ``closed_at``).

        ``closed=False`` records a provisional verdict and leaves the unit's status as it is, so a late
        re-roll-up never silently reopens a closed unit.
        """
        self.record_unit_verdicts([(uv, closed)])

    def record_unit_verdicts(self, verdicts: Sequence[tuple[UnitVerdict, bool]]) -> None:
        """Several unit verdicts (each with its ``closed`` flag) in one transaction."""
        if not verdicts:
            return
        now = utcnow()
        with self._session(f"recording {len(verdicts)} unit verdicts") as session:
            self._ensure_units(session, {uv.unit_id: uv.order_id for uv, _ in verdicts})
            rows: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
            for uv, closed in verdicts:
                row = {"id": uv.unit_id, "verdict": uv.verdict.value, "reasons": list(uv.reasons),
                       "missing_views": list(uv.missing_views), "complete": uv.complete, "updated_at": now}
                rows[closed].append(row | ({"status": UNIT_CLOSED, "closed_at": now} if closed else {}))
            for group in rows.values():  # ORM bulk UPDATE by primary key: one executemany per shape
                if group:
                    session.execute(update(UnitRow), group)

    def release_unit_evidence(self, unit_ids: Sequence[str]) -> list[str]:
        """Detach the evidence of PASS frames of units whose verdict came out PASS; return the sha256s of
        files no inspection references any more, which the caller may delete. One transaction."""
        if not unit_ids:
            return []
        with self._session("releasing evidence of PASS units") as session:
            rows = session.execute(
                select(InspectionRow.id, InspectionRow.evidence_sha256)
                .where(InspectionRow.unit_id.in_(list(unit_ids)), InspectionRow.verdict == Verdict.PASS.value,
                       InspectionRow.evidence_sha256.is_not(None))).all()
            if not rows:
                return []
            session.execute(update(InspectionRow).where(InspectionRow.id.in_([r[0] for r in rows]))
                            .values(evidence_path=None, evidence_sha256=None))
            shas = sorted({r[1] for r in rows if r[1]})
            still_used = set(session.scalars(select(InspectionRow.evidence_sha256).distinct()
                                             .where(InspectionRow.evidence_sha256.in_(shas))))
        return [sha for sha in shas if sha not in still_used]

    # -- frame results ----------------------------------------------------------------------------------

    def record_frame_results(self, results: Sequence[FrameResult],
                             evidence_paths: Mapping[int, str] | None = None) -> int:
        """Write a batch of frame results and their findings in ONE transaction; return rows inserted.

        ``evidence_paths`` maps an index into ``results`` to its stored evidence file. Units that do not
        exist yet are opened (their orders must exist: ``NotFoundError`` otherwise, and nothing is
        written). A result already recorded (same unit, camera and frame sha256) is skipped without
        failing the batch, so replaying a source or retrying a batch never double counts.
        """
        if not results:
            return 0
        evidence_paths = evidence_paths or {}
        wanted: dict[str, str] = {}
        for result in results:
            v = result.verdict
            if wanted.setdefault(v.unit_id, v.order_id) != v.order_id:
                raise ConflictError(f"batch puts unit {v.unit_id!r} under orders "
                                    f"{wanted[v.unit_id]!r} and {v.order_id!r}")
        now = utcnow()
        inserted = 0
        with self._session(f"recording {len(results)} frame results") as session:
            self._ensure_units(session, wanted)
            stmt = _insert_ignore(self.dialect, InspectionRow.__table__,  # type: ignore[arg-type]
                                  ["unit_id", "camera_id", "frame_sha256"]).returning(InspectionRow.id)
            for index, result in enumerate(results):
                v = result.verdict
                frame = result.frame
                error = v.error or (frame.error if isinstance(frame, FrameFailure) else "")
                path = evidence_paths.get(index)
                new_id = session.execute(stmt, {  # parameters, not .values(): the compiled form is cached
                    "unit_id": v.unit_id, "order_id": v.order_id, "camera_id": v.camera_id,
                    "captured_at": v.captured_at, "frame_sha256": frame_key(result), "verdict": v.verdict.value,
                    "reasons": list(v.reasons), "model_sha256": v.model_sha256, "profile_hash": v.profile_hash,
                    "error": error, "source": frame.source, "evidence_path": path,
                    "evidence_sha256": sha_of_path(path) if path else None,
                    "n_findings": len(v.findings), "created_at": now, "engine": v.engine,
                    "precision": v.precision}).scalar()
                if new_id is None:
                    log.debug("frame %s of unit %s (%s) already recorded: skipped",
                              frame_key(result)[:12], v.unit_id, v.camera_id)
                    continue
                inserted += 1
                if v.findings:
                    session.execute(DetectionRow.__table__.insert(), [  # type: ignore[attr-defined]
                        {"inspection_id": new_id, "class_name": f.class_name,
                         "confidence": float(f.confidence),
                         "x1": float(f.box[0]), "y1": float(f.box[1]), "x2": float(f.box[2]),
                         "y2": float(f.box[3]), "outcome": f.outcome.value, "rule": f.rule}
                        for f in v.findings])
        return inserted

    def frame_verdicts(self, unit_id: str) -> list[FrameVerdict]:
        """The unit's recorded frame verdicts (oldest first), rebuilt so a restarted station can roll up
        a unit whose frames arrived before the restart. Empty for a unit with no frames (or unknown)."""
        history = self.unit_histories([unit_id])
        return history[unit_id][1] if unit_id in history else []

    def unit_histories(self, unit_ids: Sequence[str]) -> dict[str, tuple[str, list[FrameVerdict]]]:
        """For each unit id that exists: its order id and recorded frame verdicts, in two queries for
        the whole set, so a station meeting a batch of new units pays one round trip, not one per unit."""
        wanted = sorted(set(unit_ids))
        if not wanted:
            return {}
        with self._session("reading unit histories") as session:
            units = dict(session.execute(select(UnitRow.id, UnitRow.order_id).where(UnitRow.id.in_(wanted))).all())
            if not units:
                return {}
            rows = list(session.scalars(select(InspectionRow).where(InspectionRow.unit_id.in_(list(units)))
                                        .order_by(InspectionRow.captured_at, InspectionRow.id)))
            findings = findings_of(session, [r.id for r in rows])
        histories: dict[str, tuple[str, list[FrameVerdict]]] = {u: (o, []) for u, o in units.items()}
        for r in rows:
            histories[r.unit_id][1].append(FrameVerdict(
                unit_id=r.unit_id, order_id=r.order_id, camera_id=r.camera_id, verdict=Verdict(r.verdict),
                findings=tuple(DefectFinding(d.class_name, d.confidence, (d.x1, d.y1, d.x2, d.y2),
                                             Verdict(d.outcome), d.rule) for d in findings.get(r.id, [])),
                reasons=tuple(r.reasons or ()), model_sha256=r.model_sha256, profile_hash=r.profile_hash,
                captured_at=r.captured_at,
                frame_sha256="" if r.frame_sha256.startswith(FAILURE_KEY_PREFIX) else r.frame_sha256,
                error=r.error, engine=r.engine, precision=r.precision))
        return histories

    def unit_record(self, unit_id: str) -> dict[str, Any]:
        """Everything about one unit, JSON-ready: its order, the profile, each frame with its findings,
        verdict, evidence path and the model that judged it. The answer to "why did unit X fail?"."""
        with self._session("reading a unit") as session:
            unit = session.get(UnitRow, unit_id)
            if unit is None:
                raise NotFoundError(f"unit {unit_id!r} has no record")
            order = session.get(OrderRow, unit.order_id)
            assert order is not None  # foreign key
            rows = list(session.scalars(select(InspectionRow).where(InspectionRow.unit_id == unit_id)
                                        .order_by(InspectionRow.captured_at, InspectionRow.id)))
            findings = findings_of(session, [r.id for r in rows])
            frames = [{
                "id": r.id, "camera_id": r.camera_id, "captured_at": iso_time(r.captured_at),
                "frame_sha256": r.frame_sha256, "verdict": r.verdict, "reasons": list(r.reasons or ()),
                "findings": [finding_json(d) for d in findings.get(r.id, [])],
                "model_sha256": r.model_sha256, "engine": r.engine, "precision": r.precision,
                "profile_hash": r.profile_hash, "error": r.error, "source": r.source,
                "evidence_path": r.evidence_path, "recorded_at": iso_time(r.created_at),
            } for r in rows]
            return {
                "unit_id": unit.id, "order_id": unit.order_id, "status": unit.status, "verdict": unit.verdict,
                "reasons": list(unit.reasons or ()), "missing_views": list(unit.missing_views or ()),
                "complete": unit.complete, "created_at": iso_time(unit.created_at),
                "closed_at": iso_time(unit.closed_at), "updated_at": iso_time(unit.updated_at),
                "order": _order_from_row(order).model_dump(mode="json"),
                "profile": {"name": order.profile_name, "hash": order.profile_hash},
                "model_sha256s": sorted({r.model_sha256 for r in rows if r.model_sha256}),
                "frames": frames,
            }

    def find_inspection(self, unit_id: str, camera_id: str, frame_sha256: str) -> dict[str, Any] | None:
        """The recorded judgement of one frame of a unit (the answer to a frame sent twice), or ``None``."""
        with self._session("reading an inspection") as session:
            row = session.scalars(select(InspectionRow).where(
                InspectionRow.unit_id == unit_id, InspectionRow.camera_id == camera_id,
                InspectionRow.frame_sha256 == frame_sha256)).first()
            if row is None:
                return None
            findings = findings_of(session, [row.id]).get(row.id, [])
            return {"id": row.id, "unit_id": row.unit_id, "order_id": row.order_id, "camera_id": row.camera_id,
                    "captured_at": iso_time(row.captured_at), "frame_sha256": row.frame_sha256,
                    "verdict": row.verdict, "reasons": list(row.reasons or ()),
                    "findings": [finding_json(d) for d in findings], "model_sha256": row.model_sha256,
                    "engine": row.engine, "precision": row.precision, "profile_hash": row.profile_hash}

    def latest_profile(self, name: str) -> tuple[str, InspectionProfile]:
        """The most recently stored version of the profile called ``name``: (hash, profile)."""
        with self._session("reading a profile by name") as session:
            row = session.scalars(select(ProfileRow).where(ProfileRow.name == name)
                                  .order_by(ProfileRow.created_at.desc(), ProfileRow.hash)).first()
            if row is None:
                raise NotFoundError(f"no profile named {name!r} is stored: send the profile itself")
            return row.hash, _profile_from_row(row)

    def units_of_order(self, order_id: str) -> list[dict[str, Any]]:
        """Summary rows (id, status, verdict, complete, frames, times) of the order's units, by id."""
        with self._session("listing units") as session:
            if session.get(OrderRow, order_id) is None:
                raise NotFoundError(f"order {order_id!r} is not known")
            n_frames = (select(InspectionRow.unit_id, func.count().label("n")).group_by(InspectionRow.unit_id)
                        .subquery())
            rows = session.execute(
                select(UnitRow, func.coalesce(n_frames.c.n, 0))
                .outerjoin(n_frames, n_frames.c.unit_id == UnitRow.id)
                .where(UnitRow.order_id == order_id).order_by(UnitRow.id)).all()
            return [{"unit_id": u.id, "order_id": u.order_id, "status": u.status, "verdict": u.verdict,
                     "complete": u.complete, "missing_views": list(u.missing_views or ()), "frames": int(n),
                     "created_at": iso_time(u.created_at), "closed_at": iso_time(u.closed_at)} for u, n in rows]

    # -- reporting --------------------------------------------------------------------------------------

    def report(self) -> dict[str, list[dict[str, Any]]]:
        """Counts for the shift report.

        ``per_order``: order id, customer_ref, units, PASS/REVIEW/FAIL unit verdicts, open units.
        ``per_class``: per defect class, findings that counted (``counted``) or were uncertain
        (``uncertain``, the review band), frames and units they were found on.
        """
        def verdict_count(value: str) -> Any:
            return func.coalesce(func.sum(case((UnitRow.verdict == value, 1), else_=0)), 0)

        with self._session("building the report") as session:
            per_order = session.execute(
                select(OrderRow.id, OrderRow.customer_ref, func.count(UnitRow.id),
                       verdict_count("PASS"), verdict_count("REVIEW"), verdict_count("FAIL"),
                       func.coalesce(func.sum(case((UnitRow.status == UNIT_OPEN, 1), else_=0)), 0))
                .outerjoin(UnitRow, UnitRow.order_id == OrderRow.id)
                .group_by(OrderRow.id, OrderRow.customer_ref).order_by(OrderRow.id)).all()
            per_class = session.execute(
                select(DetectionRow.class_name,
                       func.sum(case((DetectionRow.outcome != Verdict.REVIEW.value, 1), else_=0)),
                       func.sum(case((DetectionRow.outcome == Verdict.REVIEW.value, 1), else_=0)),
                       func.count(distinct(DetectionRow.inspection_id)),
                       func.count(distinct(InspectionRow.unit_id)))
                .join(InspectionRow, InspectionRow.id == DetectionRow.inspection_id)
                .group_by(DetectionRow.class_name).order_by(DetectionRow.class_name)).all()
        return {
            "per_order": [{"order_id": r[0], "customer_ref": r[1], "units": int(r[2]), "PASS": int(r[3]),
                           "REVIEW": int(r[4]), "FAIL": int(r[5]), "open": int(r[6])} for r in per_order],
            "per_class": [{"class": r[0], "counted": int(r[1]), "uncertain": int(r[2]), "frames": int(r[3]),
                           "units": int(r[4])} for r in per_class],
        }

    def record_source_stats(self, source: str, camera_id: str, *, frames_read: int = 0,
                            frames_failed: int = 0, frames_dropped: int = 0, reconnects: int = 0,
                            last_error: str = "", recorded_at: datetime | None = None) -> None:
        """Append a snapshot of a source's counters, so lost frames show up in the log, not nowhere."""
        with self._session("recording source stats") as session:
            session.add(SourceStatsRow(
                source=source, camera_id=camera_id, frames_read=frames_read, frames_failed=frames_failed,
                frames_dropped=frames_dropped, reconnects=reconnects, last_error=last_error,
                recorded_at=recorded_at or utcnow()))

    def source_stats(self) -> list[dict[str, Any]]:
        """The latest snapshot of each (source, camera)."""
        with self._session("reading source stats") as session:
            latest = (select(func.max(SourceStatsRow.id))
                      .group_by(SourceStatsRow.source, SourceStatsRow.camera_id).scalar_subquery())
            rows = session.scalars(select(SourceStatsRow).where(SourceStatsRow.id.in_(latest))
                                   .order_by(SourceStatsRow.source, SourceStatsRow.camera_id))
            return [{"source": r.source, "camera_id": r.camera_id, "frames_read": r.frames_read,
                     "frames_failed": r.frames_failed, "frames_dropped": r.frames_dropped,
                     "reconnects": r.reconnects, "last_error": r.last_error,
                     "recorded_at": iso_time(r.recorded_at)} for r in rows]

    # -- evidence ---------------------------------------------------------------------------------------

    def evidence_in_use(self, sha256: str, *, include_pass: bool = False) -> bool:
        """Whether an inspection still needs the evidence file ``sha256``.

        By default only non-PASS inspections count: that is the question a clean-up of PASS evidence asks
        (files are content-addressed and shared, so a PASS frame's file may also be a FAIL's evidence).
        ``include_pass=True`` asks whether any inspection at all references it.
        """
        query = select(InspectionRow.id).where(InspectionRow.evidence_sha256 == sha256)
        if not include_pass:
            query = query.where(InspectionRow.verdict != Verdict.PASS.value)
        with self._session("checking evidence use") as session:
            return session.execute(query.limit(1)).first() is not None


__all__ = ["FAILURE_KEY_PREFIX", "ResultsStore", "frame_key"]
