"""``ReviewService``: operator decisions and unit dispositions in the results store.

Reviews live next to the inspections they judge, in the same database, so "which frames did a person look
at, what did they say, and which model had flagged them" is one query, and an auditor sees the labels a
dataset was built from beside the verdicts that produced them. Both tables are append-only.

A decision that labels a frame is refused unless its evidence image can still be read: a label without the
pixels it describes is useless as training data, and finding that out at dataset-build time, weeks later,
is too late to ask the operator again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from sqlalchemy import case, exists, func, select, update

from inspection.errors import InvalidFrameError, NotFoundError
from inspection.reviews import Disposition, ReviewDecision, ReviewError
from inspection.store.evidence import EvidenceInfo, EvidenceReader
from inspection.store.records import StoredFinding, iso_time
from inspection.store.repository import ResultsStore, findings_of
from inspection.store.tables.base import utcnow
from inspection.store.tables.results import InspectionRow, OrderRow, UnitRow
from inspection.store.tables.reviews import ReviewRow, UnitDispositionRow
from inspection.types import Verdict

log = logging.getLogger(__name__)

QUEUE_VERDICTS = (Verdict.FAIL.value, Verdict.REVIEW.value)
"""Unit verdicts that need a person; FAIL ranks before REVIEW in the queue."""


@dataclass(frozen=True)
class ReviewRecord:
    """One stored review of one frame; ``duplicate`` when recording it repeated the latest one (nothing stored)."""

    id: int
    inspection_id: int
    unit_id: str
    decision: str
    boxes: tuple[tuple[str | float, ...], ...]
    """``(class, x1, y1, x2, y2)`` per box, in frame pixels, as the operator drew them."""
    frame_size: tuple[int, int] | None
    """``(width, height)`` of the evidence frame the boxes were checked against, when it was read."""
    actor: str
    note: str
    created_at: str | None
    duplicate: bool = False

    @classmethod
    def of(cls, row: ReviewRow, *, duplicate: bool = False) -> ReviewRecord:
        size = (row.frame_width, row.frame_height) if row.frame_width and row.frame_height else None
        return cls(row.id, row.inspection_id, row.unit_id, row.decision, tuple(tuple(b) for b in row.boxes or ()),
                   size, row.actor, row.note, iso_time(row.created_at), duplicate)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "inspection_id": self.inspection_id, "unit_id": self.unit_id,
                "decision": self.decision, "boxes": [list(b) for b in self.boxes],
                "frame_size": list(self.frame_size) if self.frame_size else None, "actor": self.actor,
                "note": self.note, "created_at": self.created_at, "duplicate": self.duplicate}


@dataclass(frozen=True)
class DispositionRecord:
    """What was decided for a unit (release / rework / scrap), by whom, when."""

    id: int
    unit_id: str
    disposition: str
    actor: str
    note: str
    at: str | None

    @classmethod
    def of(cls, row: UnitDispositionRow) -> DispositionRecord:
        return cls(row.id, row.unit_id, row.disposition, row.actor, row.note, iso_time(row.at))

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "unit_id": self.unit_id, "disposition": self.disposition, "actor": self.actor,
                "note": self.note, "at": self.at}


@dataclass(frozen=True)
class DispositionRecorded(DispositionRecord):
    """A disposition just recorded, with the unit's verdict at that moment."""

    verdict: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "verdict": self.verdict}


@dataclass(frozen=True)
class LatestReview:
    """The latest review of one inspection with what a dataset build needs of that inspection
    (``ReviewService.latest_reviews``): its findings, its evidence, unit, order, camera and judging model."""

    review: ReviewRecord
    order_id: str
    camera_id: str
    captured_at: str | None
    verdict: str
    model_sha256: str
    evidence_path: str | None
    """Where the evidence frame is now when it still exists, else where it was recorded."""
    evidence_sha256: str | None
    evidence_exists: bool
    findings: tuple[StoredFinding, ...]

    def to_json(self) -> dict[str, Any]:
        return self.review.to_json() | {
            "order_id": self.order_id, "camera_id": self.camera_id, "captured_at": self.captured_at,
            "verdict": self.verdict, "model_sha256": self.model_sha256, "evidence_path": self.evidence_path,
            "evidence_sha256": self.evidence_sha256, "evidence_exists": self.evidence_exists,
            "findings": [f.to_json() for f in self.findings]}


def _check_actor(actor: str) -> str:
    actor = (actor or "").strip()
    if not actor:
        raise ReviewError("a disposition needs the name of who decided (actor)")
    if len(actor) > 128:
        raise ReviewError("actor name is longer than 128 characters")
    return actor


@dataclass(frozen=True)
class QueueItem:
    """One unit waiting for a person, with what the queue page shows of it."""

    unit_id: str
    order_id: str
    customer_ref: str
    product: str
    due_date: str | None
    verdict: str | None
    reasons: tuple[str, ...]
    status: str
    flagged_frames: int
    reviewed_frames: int
    updated_at: str | None
    frames: int
    unit_level: bool
    """Every frame passes alone and the unit fails on a unit-level rule: all its frames are to look at."""
    to_review: int
    cameras: tuple[str, ...]
    classes: tuple[str, ...]
    first_captured: str | None
    last_captured: str | None
    thumbnail_id: int | None
    missing_views: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"unit_id": self.unit_id, "order_id": self.order_id, "customer_ref": self.customer_ref,
                "product": self.product, "due_date": self.due_date, "verdict": self.verdict,
                "reasons": list(self.reasons), "status": self.status, "flagged_frames": self.flagged_frames,
                "reviewed_frames": self.reviewed_frames, "updated_at": self.updated_at, "frames": self.frames,
                "unit_level": self.unit_level, "to_review": self.to_review, "cameras": list(self.cameras),
                "classes": list(self.classes), "first_captured": self.first_captured,
                "last_captured": self.last_captured, "thumbnail_id": self.thumbnail_id,
                "missing_views": list(self.missing_views)}


class ReviewService:
    """Record and read operator reviews and unit dispositions through a ``ResultsStore``.

    Stateless apart from the store, so the CLI and the review page can each make one per request.
    """

    def __init__(self, store: ResultsStore) -> None:
        self.store = store

    # -- evidence ---------------------------------------------------------------------------------------

    def evidence_info(self, evidence_path: str | None, evidence_sha256: str | None = None) -> EvidenceInfo | None:
        """Where an inspection's evidence frame is now (file or object), or ``None`` if it is gone: the
        recorded place, then the content address in the configured store (``EvidenceStore.locate``), so a
        moved data dir or another station's frame in the shared bucket is found. ``StoreError`` if the
        store is away."""
        return self.store.evidence.locate(evidence_path, evidence_sha256)

    def _evidence_ref(self, inspection_id: int) -> tuple[str | None, str | None]:
        """The recorded evidence path and sha256 of an inspection; ``NotFoundError`` if it is not recorded."""
        with self.store._session("reading an inspection's evidence") as session:
            row = session.execute(select(InspectionRow.evidence_path, InspectionRow.evidence_sha256)
                                  .where(InspectionRow.id == inspection_id)).first()
        if row is None:
            raise NotFoundError(f"inspection {inspection_id} is not recorded")
        return row[0], row[1]

    def evidence_of(self, inspection_id: int) -> EvidenceReader:
        """An inspection's evidence frame opened for streaming (close it); ``NotFoundError`` if the inspection
        or its frame is gone, ``StoreError`` if the evidence store cannot be reached."""
        reader = self.store.evidence.open_ref(*self._evidence_ref(inspection_id))
        if reader is None:
            raise NotFoundError(f"inspection {inspection_id} has no evidence frame (released after a PASS, or gone)")
        return reader

    @staticmethod
    def _frame_size(data: bytes) -> tuple[int, int] | None:
        """(width, height) of an image's bytes; ``None`` if they do not decode."""
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if image is None or image.size == 0:
            return None
        return int(image.shape[1]), int(image.shape[0])

    # -- reviews ----------------------------------------------------------------------------------------

    def record(self, decision: ReviewDecision) -> ReviewRecord:
        """Append ``decision``; return the stored review (``duplicate`` when it repeats).

        Idempotent for double clicks and retried requests: if the inspection's latest review already says
        the same thing (decision, boxes, actor), that row is returned and nothing is written. Concurrent
        identical requests are serialised by a row lock on the inspection, so they cannot both insert.

        Raises ``NotFoundError`` for an unknown inspection and ``ReviewError`` when the frame's evidence is
        gone or unreadable (for decisions that label it) or a box reaches outside the frame.
        """
        evidence_path, evidence_sha = self._evidence_ref(decision.inspection_id)
        size: tuple[int, int] | None = None
        if decision.decision.labels_frame:
            reader = self.store.evidence.open_ref(evidence_path, evidence_sha)
            if reader is None:
                raise ReviewError(
                    f"inspection {decision.inspection_id}: its evidence frame "
                    f"{'(' + evidence_path + ') ' if evidence_path else ''}is gone, so a "
                    f"'{decision.decision.value}' decision cannot become a labeled sample; nothing recorded")
            with reader:
                try:
                    size = self._frame_size(reader.read_all())
                except InvalidFrameError:  # altered or truncated; a StoreError (store away) goes up: retry later
                    size = None
            if size is None:
                raise ReviewError(f"inspection {decision.inspection_id}: evidence frame {reader.info.ref} does not "
                                  f"decode as an image, so it cannot become a labeled sample; nothing recorded")
        if size is not None:
            width, height = size
            for box in decision.boxes:
                if not box.box.inside(width, height):
                    raise ReviewError(f"box {box.to_json()} reaches outside the {width}x{height} frame of "
                                      f"inspection {decision.inspection_id}")
        boxes = [b.to_json() for b in decision.boxes]
        with self.store._session("recording a review") as session:
            # A no-op write takes the row lock (PostgreSQL) / the write lock (SQLite) before the duplicate
            # check, so two identical clicks arriving together are serialised instead of both inserted.
            locked = session.execute(update(InspectionRow).where(InspectionRow.id == decision.inspection_id)
                                     .values(n_findings=InspectionRow.n_findings)
                                     .execution_options(synchronize_session=False))
            if locked.rowcount == 0:  # type: ignore[attr-defined]
                raise NotFoundError(f"inspection {decision.inspection_id} is not recorded")
            latest = session.scalars(select(ReviewRow).where(ReviewRow.inspection_id == decision.inspection_id)
                                     .order_by(ReviewRow.id.desc()).limit(1)).first()
            if (latest is not None and latest.decision == decision.decision.value
                    and latest.actor == decision.actor and [list(b) for b in latest.boxes or ()] == boxes):
                log.info("review of inspection %d by %s repeats review %d: not recorded again",
                         decision.inspection_id, decision.actor, latest.id)
                return ReviewRecord.of(latest, duplicate=True)
            unit_id = session.scalar(select(InspectionRow.unit_id).where(
                InspectionRow.id == decision.inspection_id))
            assert unit_id is not None  # locked above
            review = ReviewRow(inspection_id=decision.inspection_id, unit_id=unit_id,
                               decision=decision.decision.value, boxes=boxes,
                               frame_width=size[0] if size else None, frame_height=size[1] if size else None,
                               actor=decision.actor, note=decision.note, created_at=utcnow())
            session.add(review)
            session.flush()
            self.store.seal(session, [unit_id], "review")
            result = ReviewRecord.of(review)
        log.info("review %d: inspection %d %s by %s", result.id, decision.inspection_id,
                 decision.decision.value, decision.actor)
        return result

    def history(self, inspection_id: int) -> list[ReviewRecord]:
        """Every review of one inspection, oldest first (the audit trail of a changed mind)."""
        with self.store._session("reading review history") as session:
            if session.get(InspectionRow, inspection_id) is None:
                raise NotFoundError(f"inspection {inspection_id} is not recorded")
            rows = session.scalars(select(ReviewRow).where(ReviewRow.inspection_id == inspection_id)
                                   .order_by(ReviewRow.id))
            return [ReviewRecord.of(r) for r in rows]

    def histories(self, inspection_ids: Sequence[int]) -> dict[int, list[ReviewRecord]]:
        """``history`` of many inspections in one query (a unit's frames); ids without reviews map to []."""
        grouped: dict[int, list[ReviewRecord]] = {i: [] for i in inspection_ids}
        if not grouped:
            return grouped
        with self.store._session("reading review histories") as session:
            for row in session.scalars(select(ReviewRow).where(ReviewRow.inspection_id.in_(list(grouped)))
                                       .order_by(ReviewRow.id)):
                grouped[row.inspection_id].append(ReviewRecord.of(row))
        return grouped

    def latest_reviews(self, since_id: int = 0) -> list[LatestReview]:
        """The latest decision per inspection, for inspections whose latest review id is above ``since_id``.

        Only the latest counts because an operator who changes their mind means the new label. Each row
        carries what the dataset builder needs: the inspection's findings, its evidence (path resolved to
        where the file is now, when it still exists), unit, order, camera and the model sha256 that judged it.
        Ordered by review id.
        """
        if since_id < 0:
            raise ReviewError(f"since must be a review id >= 0, got {since_id}")
        latest_ids = select(func.max(ReviewRow.id)).group_by(ReviewRow.inspection_id).scalar_subquery()
        with self.store._session("reading latest reviews") as session:
            pairs = session.execute(
                select(ReviewRow, InspectionRow).join(InspectionRow, InspectionRow.id == ReviewRow.inspection_id)
                .where(ReviewRow.id.in_(latest_ids), ReviewRow.id > since_id).order_by(ReviewRow.id)).all()
            findings = findings_of(session, [r.inspection_id for r, _ in pairs])
        out = []
        for review, insp in pairs:
            found = self.evidence_info(insp.evidence_path, insp.evidence_sha256)
            out.append(LatestReview(
                ReviewRecord.of(review), order_id=insp.order_id, camera_id=insp.camera_id,
                captured_at=iso_time(insp.captured_at), verdict=insp.verdict, model_sha256=insp.model_sha256,
                evidence_path=found.ref if found else insp.evidence_path, evidence_sha256=insp.evidence_sha256,
                evidence_exists=found is not None,
                findings=tuple(StoredFinding.of(d) for d in findings.get(insp.id, []))))
        return out

    # -- dispositions -----------------------------------------------------------------------------------

    def set_disposition(self, unit_id: str, disposition: Disposition | str, actor: str,
                        note: str = "") -> DispositionRecorded:
        """Record what happens to a unit (release / rework / scrap); it leaves the review queue.

        Appended, never overwritten: a unit first sent to rework and later released keeps both rows.
        """
        value = disposition if isinstance(disposition, Disposition) else Disposition.parse(disposition)
        actor = _check_actor(actor)
        with self.store._session("recording a disposition") as session:
            unit = session.get(UnitRow, unit_id)
            if unit is None:
                raise NotFoundError(f"unit {unit_id!r} has no record")
            row = UnitDispositionRow(unit_id=unit_id, disposition=value.value, actor=actor, note=note or "",
                                     at=utcnow())
            session.add(row)
            session.flush()
            self.store.seal(session, [unit_id], "disposition")
            result = DispositionRecorded(row.id, unit_id, row.disposition, row.actor, row.note, iso_time(row.at),
                                         unit.verdict)
        if unit.verdict not in QUEUE_VERDICTS:
            log.warning("unit %s dispositioned %s although its verdict is %s", unit_id, value, unit.verdict)
        log.info("unit %s: %s by %s", unit_id, value, actor)
        return result

    def dispositions(self, unit_id: str) -> list[DispositionRecord]:
        """The unit's dispositions, oldest first."""
        with self.store._session("reading dispositions") as session:
            rows = session.scalars(select(UnitDispositionRow).where(UnitDispositionRow.unit_id == unit_id)
                                   .order_by(UnitDispositionRow.id))
            return [DispositionRecord.of(r) for r in rows]

    def queue(self, limit: int = 100) -> list[QueueItem]:
        """Units waiting for a person: verdict FAIL or REVIEW and no disposition yet.

        Ranked by severity (FAIL first), then the order's due date (earliest first, none last), then the
        time the unit was opened, so the unit that blocks the most urgent shipment is at the top.
        """
        if limit < 1:
            raise ReviewError(f"queue limit must be at least 1, got {limit}")
        disposed = exists().where(UnitDispositionRow.unit_id == UnitRow.id)
        reviewed = (select(ReviewRow.unit_id, func.count(func.distinct(ReviewRow.inspection_id)).label("n"))
                    .group_by(ReviewRow.unit_id).subquery())
        flagged = (select(InspectionRow.unit_id, func.count().label("n"))
                   .where(InspectionRow.verdict != Verdict.PASS.value).group_by(InspectionRow.unit_id).subquery())
        query = (
            select(UnitRow, OrderRow, func.coalesce(flagged.c.n, 0), func.coalesce(reviewed.c.n, 0))
            .join(OrderRow, OrderRow.id == UnitRow.order_id)
            .outerjoin(flagged, flagged.c.unit_id == UnitRow.id)
            .outerjoin(reviewed, reviewed.c.unit_id == UnitRow.id)
            .where(UnitRow.verdict.in_(QUEUE_VERDICTS), ~disposed)
            .order_by(case((UnitRow.verdict == Verdict.FAIL.value, 0), else_=1),
                      case((OrderRow.due_date.is_(None), 1), else_=0), OrderRow.due_date,
                      UnitRow.created_at, UnitRow.id)
            .limit(limit))
        with self.store._session("reading the review queue") as session:
            rows = session.execute(query).all()
            frames = self._queue_frames(session, [u.id for u, *_ in rows])
            out = []
            for u, o, n_flagged, n_reviewed in rows:
                info = frames.get(u.id, {})
                total = int(info.get("frames", 0))
                # A unit can fail on a unit-level count (4 pits over the unit, 2 tolerated) while each frame
                # passes alone: then every frame is the operator's to look at, and the queue must say so.
                unit_level = int(n_flagged) == 0 and total > 0
                out.append(QueueItem(
                    unit_id=u.id, order_id=u.order_id, customer_ref=o.customer_ref, product=o.product,
                    due_date=o.due_date.isoformat() if o.due_date else None, verdict=u.verdict,
                    reasons=tuple(u.reasons or ()), status=u.status, flagged_frames=int(n_flagged),
                    reviewed_frames=int(n_reviewed), updated_at=iso_time(u.updated_at), frames=total,
                    unit_level=unit_level, to_review=total if unit_level else int(n_flagged),
                    cameras=tuple(info.get("cameras", ())), classes=tuple(info.get("classes", ())),
                    first_captured=info.get("first_captured"), last_captured=info.get("last_captured"),
                    thumbnail_id=info.get("thumbnail_id"), missing_views=tuple(u.missing_views or ())))
            return out

    @staticmethod
    def _queue_frames(session: Any, unit_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Per unit: frame count, cameras, finding classes, first / last capture, the frame to show as its
        thumbnail (the first flagged one with evidence, else the first with evidence)."""
        info: dict[str, dict[str, Any]] = {}
        if not unit_ids:
            return info
        rows = session.execute(
            select(InspectionRow.id, InspectionRow.unit_id, InspectionRow.camera_id, InspectionRow.captured_at,
                   InspectionRow.verdict, InspectionRow.evidence_path)
            .where(InspectionRow.unit_id.in_(list(unit_ids)))
            .order_by(InspectionRow.captured_at, InspectionRow.id)).all()
        for iid, uid, camera, captured, verdict, evidence in rows:
            entry = info.setdefault(uid, {"frames": 0, "cameras": [], "classes": [], "first_captured": None,
                                          "last_captured": None, "thumbnail_id": None, "_flagged_thumb": False})
            entry["frames"] += 1
            if camera not in entry["cameras"]:
                entry["cameras"].append(camera)
            entry["first_captured"] = entry["first_captured"] or iso_time(captured)
            entry["last_captured"] = iso_time(captured)
            if evidence and (entry["thumbnail_id"] is None or (verdict != Verdict.PASS.value
                                                               and not entry["_flagged_thumb"])):
                entry["thumbnail_id"] = iid
                entry["_flagged_thumb"] = verdict != Verdict.PASS.value
        ids = [r[0] for r in rows]
        by_unit = {r[0]: r[1] for r in rows}
        for iid, found in findings_of(session, ids).items():
            entry = info[by_unit[iid]]
            for d in found:
                if d.class_name not in entry["classes"]:
                    entry["classes"].append(d.class_name)
        for entry in info.values():
            entry.pop("_flagged_thumb", None)
            entry["classes"].sort()
        return info


__all__ = ["QUEUE_VERDICTS", "LatestReview", "ReviewService"]
