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
import socket
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, case, distinct, func, select, update
from sqlalchemy.orm import Session

from inspection import analytics
from inspection.boxes import Box
from inspection.conformance import CameraCalibration
from inspection.conformance.colour import WhiteBalance
from inspection.conformance.dimensions import Scale
from inspection.errors import ConflictError, NotFoundError, StoreError
from inspection.hashing import sha256_bytes
from inspection.identity import LabelSettings
from inspection.profiles import InspectionProfile, Order, OrderBook
from inspection.rules import roll_up
from inspection.store import audit
from inspection.store.db import Database, describe, insert_ignore, open_database
from inspection.store.evidence import EvidenceStore, LocalEvidenceStore, sha_of_path
from inspection.store.records import (
    CALIBRATION_KINDS,
    UNIT_CLOSED,
    UNIT_OPEN,
    CalibrationRecord,
    ClassFindings,
    FrameRecord,
    InspectionRecord,
    OrderVerdicts,
    ProfileRef,
    SourceStats,
    StoreReport,
    UnitRecord,
    iso_time,
)
from inspection.store.tables.audit import AuditChainRow
from inspection.store.tables.base import utcnow
from inspection.store.tables.results import (
    CameraCalibrationRow,
    ConformanceResultRow,
    DetectionRow,
    InspectionRow,
    OrderRow,
    ProfileRow,
    SourceStatsRow,
    UnitRow,
)
from inspection.store.tables.reviews import ReviewRow
from inspection.types import (
    ConformanceResult,
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


def _order_from_row(row: OrderRow) -> Order:
    return Order(id=row.id, customer_ref=row.customer_ref, product=row.product,
                 attributes=dict(row.attributes or {}), due_date=row.due_date, profile=row.profile_name)


def _profile_from_row(row: ProfileRow) -> InspectionProfile:
    try:
        return InspectionProfile.model_validate(row.body)
    except ValueError as e:
        raise StoreError(f"stored profile {row.hash} ({row.name}) no longer validates: {e}") from e


def findings_of(session: Session, inspection_ids: Sequence[int]) -> dict[int, list[DetectionRow]]:
    """The findings of many inspections, grouped by inspection id, in as few queries as the driver allows."""
    grouped: dict[int, list[DetectionRow]] = defaultdict(list)
    ids = sorted(set(inspection_ids))
    for start in range(0, len(ids), 500):  # stay far below any bound-parameter limit
        for d in session.scalars(select(DetectionRow).where(DetectionRow.inspection_id.in_(ids[start:start + 500]))
                                 .order_by(DetectionRow.id)):
            grouped[d.inspection_id].append(d)
    return grouped


@dataclass(frozen=True)
class ResultRecord:
    """What a row of ``inspections`` needs of a frame result: no pixels, so it can wait in the outbox."""

    verdict: FrameVerdict
    key: str
    """``inspections.frame_sha256``: see ``frame_key``."""
    source: str = ""
    error: str = ""

    @classmethod
    def of(cls, result: FrameResult | ResultRecord) -> ResultRecord:
        if isinstance(result, ResultRecord):
            return result
        frame = result.frame
        error = result.verdict.error or (frame.error if isinstance(frame, FrameFailure) else "")
        return cls(result.verdict, frame_key(result), frame.source, error)


@dataclass(frozen=True)
class GroupCommit:
    """What one group commit did: per result whether it was new (``False``: already recorded, e.g. by another
    process or an earlier try), and the units whose verdict it changed (rolled up from the database)."""

    inserted: tuple[bool, ...]
    unit_verdicts: Mapping[str, UnitVerdict]
    released: tuple[str, ...] = ()
    """With ``release_pass_evidence``: sha256s of evidence files no inspection references any more, detached in
    the same transaction; the caller deletes them once it has the commit (a file left behind costs disk only)."""


@dataclass(frozen=True)
class UnitSummary:
    """One unit of an order, as the order's unit list shows it (``units_of_order``)."""

    unit_id: str
    order_id: str
    status: str
    verdict: str | None
    complete: bool
    missing_views: tuple[str, ...]
    frames: int
    created_at: str | None
    closed_at: str | None

    def to_json(self) -> dict[str, Any]:
        return {"unit_id": self.unit_id, "order_id": self.order_id, "status": self.status, "verdict": self.verdict,
                "complete": self.complete, "missing_views": list(self.missing_views), "frames": self.frames,
                "created_at": self.created_at, "closed_at": self.closed_at}


def conformance_of(session: Session, inspection_ids: Sequence[int]) -> dict[int, list[ConformanceResultRow]]:
    """The conformance results of many inspections, grouped by inspection id, in rule order."""
    grouped: dict[int, list[ConformanceResultRow]] = defaultdict(list)
    ids = sorted(set(inspection_ids))
    for start in range(0, len(ids), 500):
        for c in session.scalars(select(ConformanceResultRow)
                                 .where(ConformanceResultRow.inspection_id.in_(ids[start:start + 500]))
                                 .order_by(ConformanceResultRow.id)):
            grouped[c.inspection_id].append(c)
    return grouped


def _conformance_from_row(c: ConformanceResultRow) -> ConformanceResult:
    return ConformanceResult(kind=c.kind, name=c.name, outcome=Verdict(c.outcome), measured=c.measured,
                             expected=c.expected, tolerance=c.tolerance, deviation=c.deviation, reason=c.reason,
                             values=tuple((k, float(v)) for k, v in (c.values or {}).items()))


class ResultsStore(Database):
    """The results log: orders and profiles, units, per-frame inspections, findings and source stats.

    Thread-safe: each call uses its own session/connection from the engine's pool, so the batched writer
    thread and the API's request threads can share one store.
    """

    label = "results database"

    def __init__(self, engine: Engine, evidence: EvidenceStore, *, station_id: str = "") -> None:
        super().__init__(engine)
        self.evidence = evidence
        self.station_id = station_id or socket.gethostname() or "station"
        """Whose traceability chain this store's writes extend (``QC_STATION_ID``, else the host name)."""

        self._profiles: dict[str, InspectionProfile] = {}  # by content hash: never stale

    @classmethod
    def open(cls, url: str, evidence: EvidenceStore | Path, *, station_id: str = "") -> ResultsStore:
        """Connect to ``url``, migrate it to head, and keep evidence frames in ``evidence`` (a store, or the
        folder of a ``LocalEvidenceStore``)."""
        store = evidence if isinstance(evidence, EvidenceStore) else LocalEvidenceStore(Path(evidence))
        return cls(open_database(url), store, station_id=station_id)

    def __repr__(self) -> str:
        return f"ResultsStore({describe(self.engine.url)}, evidence={self.evidence.describe()})"

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
                stmt = insert_ignore(self.dialect, ProfileRow.__table__, ["hash"]).values(  # type: ignore[arg-type]
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

    def orders_with_profiles(self, updated_since: datetime | None = None) -> list[tuple[Order, InspectionProfile]]:
        """Orders (changed since ``updated_since``, default all) with the profile each is inspected against now,
        in one query: what a station caches locally."""
        query = select(OrderRow, ProfileRow).join(ProfileRow, ProfileRow.hash == OrderRow.profile_hash)
        if updated_since is not None:
            query = query.where(OrderRow.updated_at >= updated_since)
        with self._session("listing orders with profiles") as session:
            rows = session.execute(query.order_by(OrderRow.id)).all()
            return [(_order_from_row(o), _profile_from_row(p)) for o, p in rows]

    def list_orders(self) -> list[Order]:
        with self._session("listing orders") as session:
            return [_order_from_row(r) for r in session.scalars(select(OrderRow).order_by(OrderRow.id))]

    def order_of_unit(self, unit_id: str) -> str | None:
        """The order a unit belongs to: as recorded, else the order whose ``attributes.units`` lists it."""
        with self._session("looking up a unit's order") as session:
            recorded = session.scalar(select(UnitRow.order_id).where(UnitRow.id == unit_id))
            if recorded is not None:
                return recorded
            for order_id, attributes in session.execute(select(OrderRow.id, OrderRow.attributes)):
                listed = (attributes or {}).get("units")
                if isinstance(listed, list) and unit_id in listed:
                    return str(order_id)
        return None

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
        missing = {u: wanted[u] for u in sorted(wanted) if u not in existing}  # id order: no lock cycles
        if not missing:
            return 0
        orders = set(session.scalars(select(OrderRow.id).where(OrderRow.id.in_(set(missing.values())))))
        unknown = sorted(set(missing.values()) - orders)
        if unknown:
            raise NotFoundError(f"order {unknown[0]!r} is not known: import the orders file that lists it"
                                + (f" (also unknown: {unknown[1:]})" if len(unknown) > 1 else ""))
        now = utcnow()
        stmt = insert_ignore(self.dialect, UnitRow.__table__, ["id"])  # type: ignore[arg-type]
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

    def seal(self, session: Session, unit_ids: Sequence[str], event: str) -> None:
        """Append the units' records to this station's traceability chain, in ``session``'s transaction."""
        session.flush()
        session.expire_all()  # bulk UPDATEs above bypass loaded objects: the record is read from the rows
        audit.append_links(session, self.station_id, sorted(set(unit_ids)), event)

    def audit_verify(self, order_id: str | None = None) -> audit.VerifyReport:
        """Walk the traceability chains; compare each unit's (of ``order_id``) latest link with its rows."""
        with self._session("verifying the traceability chain") as session:
            if order_id is not None and session.get(OrderRow, order_id) is None:
                raise NotFoundError(f"order {order_id!r} is not known")
            return audit.verify(session, order_id)

    def seal_legacy_units(self) -> list[str]:
        """Chain every unit that has a verdict but no link (recorded before migration 0006), as it is now."""
        with self._session("sealing units recorded before the chain") as session:
            units = audit.unlinked_units(session)
            if units:
                self.seal(session, units, "sealed")
        return units

    def chain_links(self, unit_ids: Sequence[str]) -> dict[str, audit.ChainLink]:
        """Each unit's latest link in the chain (station, seq, entry hash): what a certificate cites."""
        with self._session("reading chain links") as session:
            return audit.chain_hash(session, unit_ids)

    @staticmethod
    def _sync_finding_outcomes(session: Session, verdicts: Sequence[UnitVerdict]) -> None:
        """Findings the unit's roll-up judged again (a unit-wide count rule failed them) are stored as such.

        A frame's findings are written when the frame is judged; only the unit can tell that three tolerated
        dents on three views are one too many. The stored outcome then follows the unit verdict, so the CLI
        and the review page name the findings that failed the unit.
        """
        wanted = {(f.unit_id, f.camera_id, f.frame_sha256): f.findings
                  for uv in verdicts for f in uv.frames if f.frame_sha256 and f.findings}
        if not wanted:
            return
        rows = session.execute(
            select(InspectionRow.id, InspectionRow.unit_id, InspectionRow.camera_id, InspectionRow.frame_sha256)
            .where(InspectionRow.unit_id.in_(sorted({k[0] for k in wanted})))).all()
        ids = {(r[1], r[2], r[3]): r[0] for r in rows if (r[1], r[2], r[3]) in wanted}
        stored = findings_of(session, list(ids.values()))
        changes = []
        for key, inspection_id in ids.items():
            for row, finding in zip(stored.get(inspection_id, []), wanted[key], strict=False):
                if row.class_name == finding.class_name and (row.outcome, row.rule) != (finding.outcome.value,
                                                                                        finding.rule):
                    changes.append({"id": row.id, "outcome": finding.outcome.value, "rule": finding.rule})
        if changes:
            session.execute(update(DetectionRow), changes)

    @staticmethod
    def _release_pass(session: Session, unit_ids: Sequence[str]) -> list[str]:
        """Detach the evidence of PASS frames of units whose verdict came out PASS (inside ``session``'s
        transaction); return the sha256s of files no inspection references any more, for the caller to delete
        after the commit."""
        if not unit_ids:
            return []
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
        failing the batch, so replaying a source or retrying a batch never double counts. Units are not
        rolled up here: ``commit_group`` does both.
        """
        return sum(self.commit_group(results, evidence_paths, roll_up_units=False).inserted)

    def commit_group(self, results: Sequence[FrameResult | ResultRecord],
                     evidence_paths: Mapping[int, str] | None = None, *,
                     close_units: Sequence[str] = (), roll_up_units: bool = True,
                     release_pass_evidence: bool = False) -> GroupCommit:
        """Record a group of frame results and roll their units up, in ONE transaction (one fsync).

        The units touched are locked first (``SELECT .. FOR UPDATE`` on PostgreSQL; on SQLite the first
        statement is a write, which takes the database's write lock), and each unit's verdict is rolled up
        from *every frame the database holds for it*, not from one process's memory: two processes that each
        record one of a unit's two required views produce exactly one complete verdict, whichever commits
        second. ``close_units`` are closed in the same transaction (views still missing are named).
        ``release_pass_evidence``: units whose verdict came out PASS have their PASS frames' evidence detached
        in the same transaction too (no second commit). Returns
        which results were new, the units whose verdict changed and the evidence files now unreferenced.
        """
        evidence_paths = evidence_paths or {}
        records = [ResultRecord.of(r) for r in results]
        wanted: dict[str, str] = {}
        for record in records:
            v = record.verdict
            if wanted.setdefault(v.unit_id, v.order_id) != v.order_id:
                raise ConflictError(f"batch puts unit {v.unit_id!r} under orders "
                                    f"{wanted[v.unit_id]!r} and {v.order_id!r}")
        if not records and not close_units:
            return GroupCommit((), {})
        now = utcnow()
        touched: set[str] = set()
        with self._session(f"recording {len(records)} frame results") as session:
            self._lock_units(session, sorted(set(wanted) | set(close_units)))
            if wanted:
                self._ensure_units(session, wanted)
                if self.dialect == "postgresql":  # new units exist now: lock them too, in id order
                    self._lock_units(session, sorted(wanted))
            new_ids = self._insert_inspections(session, records, evidence_paths, now)
            inserted = [i is not None for i in new_ids]
            conformance: list[dict[str, Any]] = []
            detections: list[dict[str, Any]] = []
            for record, new_id in zip(records, new_ids, strict=True):
                v = record.verdict
                if new_id is None:
                    log.debug("frame %s of unit %s (%s) already recorded: skipped",
                              record.key[:12], v.unit_id, v.camera_id)
                    continue
                touched.add(v.unit_id)
                conformance.extend(
                    {"inspection_id": new_id, "kind": c.kind, "name": c.name, "outcome": c.outcome.value,
                     "measured": c.measured, "expected": c.expected, "tolerance": c.tolerance,
                     "deviation": c.deviation, "reason": c.reason, "values": {k: float(x) for k, x in c.values}}
                    for c in v.conformance)
                detections.extend(
                    {"inspection_id": new_id, "class_name": f.class_name, "confidence": float(f.confidence),
                     "x1": float(f.box.x1), "y1": float(f.box.y1), "x2": float(f.box.x2), "y2": float(f.box.y2),
                     "outcome": f.outcome.value, "rule": f.rule}
                    for f in v.findings)
            # the group's rows of each table in one executemany, not one statement per frame
            if conformance:
                session.execute(ConformanceResultRow.__table__.insert(), conformance)  # type: ignore[attr-defined]
            if detections:
                session.execute(DetectionRow.__table__.insert(), detections)  # type: ignore[attr-defined]
            changed: dict[str, UnitVerdict] = {}
            released: list[str] = []
            if roll_up_units or close_units:
                closing = set(close_units)
                changed = self._roll_up(session, sorted((touched if roll_up_units else set()) | closing),
                                        closing, now)
                if release_pass_evidence:
                    released = self._release_pass(session, sorted(u for u, uv in changed.items()
                                                                  if uv.verdict is Verdict.PASS))
        return GroupCommit(tuple(inserted), changed, tuple(released))

    def _insert_inspections(self, session: Session, records: Sequence[ResultRecord],
                            evidence_paths: Mapping[int, str], now: datetime) -> list[int | None]:
        """Insert the group's inspection rows in ONE statement (``INSERT .. ON CONFLICT DO NOTHING .. RETURNING``,
        many rows); per record the new row's id, ``None`` where that frame was already recorded (also earlier in
        the same group: the first one counts). Rows come back keyed by (unit, camera, frame sha256), since
        neither backend promises RETURNING in parameter order with ON CONFLICT."""
        if not records:
            return []
        params: list[dict[str, Any]] = []
        for index, record in enumerate(records):
            v = record.verdict
            path = evidence_paths.get(index)
            params.append({
                "unit_id": v.unit_id, "order_id": v.order_id, "camera_id": v.camera_id,
                "captured_at": v.captured_at, "frame_sha256": record.key, "verdict": v.verdict.value,
                "reasons": list(v.reasons), "model_sha256": v.model_sha256, "profile_hash": v.profile_hash,
                "error": record.error, "source": record.source, "evidence_path": path,
                "evidence_sha256": sha_of_path(path) if path else None,
                "n_findings": len(v.findings), "created_at": now, "engine": v.engine, "precision": v.precision})
        stmt = insert_ignore(self.dialect, InspectionRow.__table__,  # type: ignore[arg-type]
                             ["unit_id", "camera_id", "frame_sha256"]).returning(
            InspectionRow.id, InspectionRow.unit_id, InspectionRow.camera_id, InspectionRow.frame_sha256)
        rows = session.execute(stmt, params).all()
        new: dict[tuple[str, str, str], int] = {(u, c, k): row_id for row_id, u, c, k in rows}
        ids: list[int | None] = []
        for p in params:  # a key twice in the group: the first one is the new row, the rest duplicates
            ids.append(new.pop((p["unit_id"], p["camera_id"], p["frame_sha256"]), None))
        return ids

    def _lock_units(self, session: Session, unit_ids: Sequence[str]) -> None:
        """Serialise roll-ups of these units across processes until the transaction ends."""
        if not unit_ids:
            return
        if self.dialect == "postgresql":
            session.execute(select(UnitRow.id).where(UnitRow.id.in_(unit_ids)).order_by(UnitRow.id)
                            .with_for_update())
        else:  # SQLite locks the whole database for writing at the first write statement of a transaction
            session.execute(update(UnitRow).where(UnitRow.id.in_(unit_ids))
                            .values(updated_at=UnitRow.updated_at))

    def _profile_by_hash(self, session: Session, profile_hash: str) -> InspectionProfile:
        profile = self._profiles.get(profile_hash)
        if profile is None:
            row = session.get(ProfileRow, profile_hash)
            if row is None:
                raise StoreError(f"profile {profile_hash!r} is not stored")
            profile = self._profiles[profile_hash] = _profile_from_row(row)  # immutable: named by content
        return profile

    def _roll_up(self, session: Session, unit_ids: Sequence[str], closing: set[str],
                 now: datetime) -> dict[str, UnitVerdict]:
        """Roll ``unit_ids`` up from the frames recorded for them (in this transaction, under their locks);
        store and return the verdicts that changed."""
        if not unit_ids:
            return {}
        units = {u.id: u for u in session.scalars(select(UnitRow).where(UnitRow.id.in_(list(unit_ids))))}
        missing = sorted(set(closing) - set(units))
        if missing:
            raise NotFoundError(f"unit {missing[0]!r} has no record")
        histories = self._histories(session, list(units))
        changed: dict[str, UnitVerdict] = {}
        for unit_id in unit_ids:
            unit = units[unit_id]
            frames = histories.get(unit_id, (unit.order_id, []))[1]
            if not frames:
                if unit_id in closing:
                    raise ConflictError(f"unit {unit_id!r} has no frames yet: nothing to judge")
                continue
            profile_hash = frames[-1].profile_hash
            if profile_hash:
                profile = self._profile_by_hash(session, profile_hash)
            else:
                order = session.get(OrderRow, unit.order_id)
                assert order is not None  # foreign key
                profile = self._profile_by_hash(session, order.profile_hash)
            uv = roll_up(frames, profile, closing=unit_id in closing)
            if uv is None:
                continue
            same = (unit.verdict == uv.verdict.value and list(unit.reasons or ()) == list(uv.reasons)
                    and list(unit.missing_views or ()) == list(uv.missing_views) and unit.complete == uv.complete)
            if same and unit.status == UNIT_CLOSED and unit_id in closing:
                changed[unit_id] = uv  # closing again: the same verdict, said again
                continue
            if same and (unit.status == UNIT_CLOSED or unit_id not in closing):
                continue
            unit.verdict, unit.reasons, unit.missing_views = uv.verdict.value, list(uv.reasons), list(uv.missing_views)
            unit.complete, unit.updated_at = uv.complete, now
            if unit.status != UNIT_CLOSED:
                unit.status, unit.closed_at = UNIT_CLOSED, now
            changed[unit_id] = uv
        session.flush()
        # In the same transaction: the findings a unit-wide rule failed, and the traceability chain, for every
        # unit whose record changed (a new verdict, or one more frame of a unit that already has its verdict).
        if changed:
            self._sync_finding_outcomes(session, list(changed.values()))
        judged = [u for u in unit_ids if units[u].verdict is not None]
        if judged:
            self.seal(session, judged, "verdict")
        return changed

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
            return self._histories(session, wanted)

    @staticmethod
    def _histories(session: Session, wanted: Sequence[str]) -> dict[str, tuple[str, list[FrameVerdict]]]:
        units = dict(session.execute(select(UnitRow.id, UnitRow.order_id).where(UnitRow.id.in_(list(wanted)))).all())
        if not units:
            return {}
        rows = list(session.scalars(select(InspectionRow).where(InspectionRow.unit_id.in_(list(units)))
                                    .order_by(InspectionRow.captured_at, InspectionRow.id)))
        findings = findings_of(session, [r.id for r in rows])
        measured = conformance_of(session, [r.id for r in rows])
        histories: dict[str, tuple[str, list[FrameVerdict]]] = {u: (o, []) for u, o in units.items()}
        for r in rows:
            histories[r.unit_id][1].append(FrameVerdict(
                unit_id=r.unit_id, order_id=r.order_id, camera_id=r.camera_id, verdict=Verdict(r.verdict),
                findings=tuple(DefectFinding(d.class_name, d.confidence, Box(d.x1, d.y1, d.x2, d.y2),
                                             Verdict(d.outcome), d.rule) for d in findings.get(r.id, [])),
                reasons=tuple(r.reasons or ()), model_sha256=r.model_sha256, profile_hash=r.profile_hash,
                captured_at=r.captured_at,
                frame_sha256="" if r.frame_sha256.startswith(FAILURE_KEY_PREFIX) else r.frame_sha256,
                error=r.error, conformance=tuple(_conformance_from_row(c) for c in measured.get(r.id, [])),
                engine=r.engine, precision=r.precision))
        return histories

    def unit_record(self, unit_id: str) -> UnitRecord:
        """Everything about one unit: its order, the profile, each frame with its findings, verdict, evidence
        path and the model that judged it. The answer to "why did unit X fail?"."""
        with self._session("reading a unit") as session:
            unit = session.get(UnitRow, unit_id)
            if unit is None:
                raise NotFoundError(f"unit {unit_id!r} has no record")
            order = session.get(OrderRow, unit.order_id)
            assert order is not None  # foreign key
            rows = list(session.scalars(select(InspectionRow).where(InspectionRow.unit_id == unit_id)
                                        .order_by(InspectionRow.captured_at, InspectionRow.id)))
            findings = findings_of(session, [r.id for r in rows])
            measured = conformance_of(session, [r.id for r in rows])
            return UnitRecord(
                unit_id=unit.id, order_id=unit.order_id, status=unit.status, verdict=unit.verdict,
                reasons=tuple(unit.reasons or ()), missing_views=tuple(unit.missing_views or ()),
                complete=unit.complete, created_at=iso_time(unit.created_at), closed_at=iso_time(unit.closed_at),
                updated_at=iso_time(unit.updated_at), order=_order_from_row(order),
                profile=ProfileRef(order.profile_name, order.profile_hash),
                model_sha256s=tuple(sorted({r.model_sha256 for r in rows if r.model_sha256})),
                frames=tuple(FrameRecord.of(r, findings.get(r.id, []), measured.get(r.id, [])) for r in rows))

    def find_inspection(self, unit_id: str, camera_id: str, frame_sha256: str) -> InspectionRecord | None:
        """The recorded judgement of one frame of a unit (the answer to a frame sent twice), or ``None``."""
        with self._session("reading an inspection") as session:
            row = session.scalars(select(InspectionRow).where(
                InspectionRow.unit_id == unit_id, InspectionRow.camera_id == camera_id,
                InspectionRow.frame_sha256 == frame_sha256)).first()
            if row is None:
                return None
            return InspectionRecord.of(row, findings_of(session, [row.id]).get(row.id, []),
                                       conformance_of(session, [row.id]).get(row.id, []))

    def latest_profile(self, name: str) -> tuple[str, InspectionProfile]:
        """The most recently stored version of the profile called ``name``: (hash, profile)."""
        with self._session("reading a profile by name") as session:
            row = session.scalars(select(ProfileRow).where(ProfileRow.name == name)
                                  .order_by(ProfileRow.created_at.desc(), ProfileRow.hash)).first()
            if row is None:
                raise NotFoundError(f"no profile named {name!r} is stored: send the profile itself")
            return row.hash, _profile_from_row(row)

    def units_of_order(self, order_id: str) -> list[UnitSummary]:
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
            return [UnitSummary(u.id, u.order_id, u.status, u.verdict, u.complete, tuple(u.missing_views or ()),
                                int(n), iso_time(u.created_at), iso_time(u.closed_at)) for u, n in rows]

    # -- reporting --------------------------------------------------------------------------------------

    def report(self) -> StoreReport:
        """Counts over everything recorded.

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
        return StoreReport(
            per_order=tuple(OrderVerdicts(r[0], r[1], int(r[2]), int(r[3]), int(r[4]), int(r[5]), int(r[6]))
                            for r in per_order),
            per_class=tuple(ClassFindings(r[0], int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in per_class))

    def record_source_stats(self, source: str, camera_id: str, *, frames_read: int = 0,
                            frames_failed: int = 0, frames_dropped: int = 0, reconnects: int = 0,
                            last_error: str = "", recorded_at: datetime | None = None) -> None:
        """Append a snapshot of a source's counters, so lost frames show up in the log, not nowhere."""
        with self._session("recording source stats") as session:
            session.add(SourceStatsRow(
                source=source, camera_id=camera_id, frames_read=frames_read, frames_failed=frames_failed,
                frames_dropped=frames_dropped, reconnects=reconnects, last_error=last_error,
                recorded_at=recorded_at or utcnow()))

    def source_stats(self) -> list[SourceStats]:
        """The latest snapshot of each (source, camera)."""
        with self._session("reading source stats") as session:
            latest = (select(func.max(SourceStatsRow.id))
                      .group_by(SourceStatsRow.source, SourceStatsRow.camera_id).scalar_subquery())
            rows = session.scalars(select(SourceStatsRow).where(SourceStatsRow.id.in_(latest))
                                   .order_by(SourceStatsRow.source, SourceStatsRow.camera_id))
            return [SourceStats(r.source, r.camera_id, r.frames_read, r.frames_failed, r.frames_dropped,
                                r.reconnects, r.last_error, iso_time(r.recorded_at)) for r in rows]

    # -- analytics ------------------------------------------------------------------------------------

    def line_history(self, since: datetime | None = None, until: datetime | None = None) -> analytics.LineHistory:
        """Frames captured in ``[since, until)``, their units, failing findings and conformance rules, and
        the latest review of each: what ``inspection.analytics`` computes the QC figures from."""
        with self._session("reading the line history") as session:
            query = select(InspectionRow.id, InspectionRow.unit_id, InspectionRow.order_id, InspectionRow.camera_id,
                           InspectionRow.captured_at, InspectionRow.verdict, InspectionRow.model_sha256)
            if since is not None:
                query = query.where(InspectionRow.captured_at >= since)
            if until is not None:
                query = query.where(InspectionRow.captured_at < until)
            frames = [analytics.FrameRow(*row) for row in session.execute(query.order_by(InspectionRow.id))]
            ids = [f.inspection_id for f in frames]
            first_seen: dict[str, datetime] = {}
            for f in frames:
                first_seen[f.unit_id] = min(first_seen.get(f.unit_id, f.captured_at), f.captured_at)
            history = analytics.LineHistory(frames=frames)
            orders = {o.id: o for o in session.scalars(select(OrderRow))}
            lines: dict[str, str] = {}
            units = sorted(first_seen)
            for start in range(0, len(units), 500):
                chunk = units[start:start + 500]
                for unit_id, station in session.execute(
                        select(AuditChainRow.unit_id, AuditChainRow.station_id)
                        .where(AuditChainRow.unit_id.in_(chunk)).order_by(AuditChainRow.id.desc())):
                    lines[unit_id] = station  # the unit's first link names its line (rows come newest first)
                for unit in session.scalars(select(UnitRow).where(UnitRow.id.in_(chunk)).order_by(UnitRow.id)):
                    order = orders.get(unit.order_id)
                    family = str((order.attributes or {}).get("family") or order.product) if order else ""
                    history.units.append(analytics.UnitRow(unit.id, unit.order_id, family or "-", unit.verdict,
                                                           first_seen[unit.id], lines.get(unit.id, "")))
            for start in range(0, len(ids), 500):
                chunk_ids = ids[start:start + 500]
                history.findings += [analytics.FindingRow(i, c, o) for i, c, o in session.execute(
                    select(DetectionRow.inspection_id, DetectionRow.class_name, DetectionRow.outcome)
                    .where(DetectionRow.inspection_id.in_(chunk_ids)))]
                history.findings += [analytics.FindingRow(i, f"conformance:{k}", o) for i, k, o in session.execute(
                    select(ConformanceResultRow.inspection_id, ConformanceResultRow.kind, ConformanceResultRow.outcome)
                    .where(ConformanceResultRow.inspection_id.in_(chunk_ids)))]
                latest = (select(func.max(ReviewRow.id)).where(ReviewRow.inspection_id.in_(chunk_ids))
                          .group_by(ReviewRow.inspection_id).scalar_subquery())
                history.reviews += [analytics.ReviewRow(i, d) for i, d in session.execute(
                    select(ReviewRow.inspection_id, ReviewRow.decision).where(ReviewRow.id.in_(latest)))]
            return history

    # -- camera calibration -----------------------------------------------------------------------------

    def record_calibration(self, camera_id: str, kind: str, values: Mapping[str, Any], *, actor: str = "",
                           note: str = "") -> CalibrationRecord:
        """Append a camera calibration (``colour``: ``{"gains": [r, g, b]}``; ``scale``: ``{"px_per_mm": x}``).

        Values are checked here, so a bad calibration is refused instead of failing every frame later.
        """
        if not camera_id:
            raise ValueError("camera_id must be non-empty")
        if kind == "colour":
            WhiteBalance(tuple(float(g) for g in values["gains"]))  # type: ignore[arg-type]
        elif kind == "scale":
            Scale(float(values["px_per_mm"]))
        elif kind == "label":
            values = LabelSettings.parse(dict(values)).model_dump(mode="json")
        else:
            raise ValueError(f"calibration kind must be one of {CALIBRATION_KINDS}, got {kind!r}")
        with self._session("recording a camera calibration") as session:
            row = CameraCalibrationRow(camera_id=camera_id, kind=kind, values=dict(values), actor=actor, note=note,
                                       created_at=utcnow())
            session.add(row)
            session.flush()
            return CalibrationRecord(row.id, camera_id, kind, dict(values), actor, note, iso_time(row.created_at))

    def calibrations(self, camera_id: str | None = None) -> list[CalibrationRecord]:
        """The latest calibration of each (camera, kind), optionally of one camera."""
        with self._session("reading camera calibrations") as session:
            latest = (select(func.max(CameraCalibrationRow.id))
                      .group_by(CameraCalibrationRow.camera_id, CameraCalibrationRow.kind).scalar_subquery())
            query = select(CameraCalibrationRow).where(CameraCalibrationRow.id.in_(latest))
            if camera_id is not None:
                query = query.where(CameraCalibrationRow.camera_id == camera_id)
            rows = session.scalars(query.order_by(CameraCalibrationRow.camera_id, CameraCalibrationRow.kind))
            return [CalibrationRecord(r.id, r.camera_id, r.kind, dict(r.values or {}), r.actor, r.note,
                                      iso_time(r.created_at)) for r in rows]

    def camera_calibration(self, camera_id: str) -> CameraCalibration | None:
        """The camera's current white balance and scale, or ``None`` when it was never calibrated."""
        latest = {c.kind: c for c in self.calibrations(camera_id)}
        if not latest:
            return None
        colour, scale, label = latest.get("colour"), latest.get("scale"), latest.get("label")
        return CameraCalibration(
            camera_id=camera_id,
            white_balance=WhiteBalance(tuple(colour.values["gains"])) if colour else None,
            scale=Scale(float(scale.values["px_per_mm"]), scale.values.get("method", "")) if scale else None,
            label=LabelSettings.model_validate(dict(label.values)) if label else None,
            details={k: v.id for k, v in latest.items()})

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


__all__ = ["FAILURE_KEY_PREFIX", "GroupCommit", "ResultRecord", "ResultsStore", "frame_key"]
