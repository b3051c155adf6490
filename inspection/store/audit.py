"""The traceability chain: each unit's whole record, hashed and linked per station, so that an edited,
inserted or deleted row is detectable.

Every time a unit's record changes through the store (a verdict, a review, a disposition) a link is
appended to the writing station's chain, in the same transaction as the change. A link holds the unit's
record as canonical JSON (frames' sha256, findings, conformance values, model sha256, profile hash,
reviews, dispositions) and

    record_hash = sha256(record)
    entry_hash  = sha256(canonical [station, seq, unit, order, event, record_hash, prev_hash])

``verify`` walks each chain (sequence numbers contiguous, each link naming its predecessor's hash, every
hash recomputed, the head row matching the last link) and then rebuilds each unit's record from the live
tables and compares it with the unit's latest link: a row changed behind the store's back (plain SQL)
shows up either way.

What this proves and what it does not: it detects changes made without rewriting the chain. Someone with
write access who recomputes every later hash can forge a consistent chain; anchoring the head hash
elsewhere (printed on the order's certificate, sent to the MES) is what makes that visible too.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from inspection.hashing import sha256_bytes
from inspection.store.tables.audit import AuditChainRow, AuditHeadRow
from inspection.store.tables.base import utcnow
from inspection.store.tables.results import ConformanceResultRow, DetectionRow, InspectionRow, UnitRow
from inspection.store.tables.reviews import ReviewRow, UnitDispositionRow

GENESIS = "0" * 64
"""The ``prev_hash`` of a station's first link."""


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _num(value: float | None, digits: int = 6) -> float | None:
    """Floats rounded, so a backend's float formatting cannot change a hash."""
    return None if value is None else round(float(value), digits)


def _time(value: Any) -> str | None:
    return None if value is None else value.isoformat()


def unit_records(session: Session, unit_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The chained record of each existing unit in ``unit_ids``, built from the live tables in a few queries.

    Evidence paths are left out on purpose: PASS evidence is released by design, and the frame's own
    sha256 already names its content.
    """
    wanted = sorted(set(unit_ids))
    if not wanted:
        return {}
    units = {u.id: u for u in session.scalars(select(UnitRow).where(UnitRow.id.in_(wanted)))}
    if not units:
        return {}
    inspections = list(session.scalars(select(InspectionRow).where(InspectionRow.unit_id.in_(list(units)))
                                       .order_by(InspectionRow.captured_at, InspectionRow.id)))
    ids = [r.id for r in inspections]
    findings: dict[int, list[DetectionRow]] = defaultdict(list)
    measured: dict[int, list[ConformanceResultRow]] = defaultdict(list)
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        for d in session.scalars(select(DetectionRow).where(DetectionRow.inspection_id.in_(chunk))
                                 .order_by(DetectionRow.id)):
            findings[d.inspection_id].append(d)
        for c in session.scalars(select(ConformanceResultRow).where(ConformanceResultRow.inspection_id.in_(chunk))
                                 .order_by(ConformanceResultRow.id)):
            measured[c.inspection_id].append(c)
    reviews: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rv in session.scalars(select(ReviewRow).where(ReviewRow.unit_id.in_(list(units))).order_by(ReviewRow.id)):
        reviews[rv.unit_id].append({"id": rv.id, "inspection_id": rv.inspection_id, "decision": rv.decision,
                                    "boxes": rv.boxes or [], "actor": rv.actor, "note": rv.note,
                                    "at": _time(rv.created_at)})
    dispositions: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for dp in session.scalars(select(UnitDispositionRow).where(UnitDispositionRow.unit_id.in_(list(units)))
                              .order_by(UnitDispositionRow.id)):
        dispositions[dp.unit_id].append({"id": dp.id, "disposition": dp.disposition, "actor": dp.actor,
                                         "note": dp.note, "at": _time(dp.at)})
    frames: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in inspections:
        frames[r.unit_id].append({
            "inspection_id": r.id, "camera_id": r.camera_id, "captured_at": _time(r.captured_at),
            "frame_sha256": r.frame_sha256, "verdict": r.verdict, "reasons": list(r.reasons or ()),
            "model_sha256": r.model_sha256, "engine": r.engine, "precision": r.precision,
            "profile_hash": r.profile_hash, "error": r.error,
            "findings": [{"class": d.class_name, "confidence": _num(d.confidence),
                          "box": [_num(d.x1, 3), _num(d.y1, 3), _num(d.x2, 3), _num(d.y2, 3)],
                          "outcome": d.outcome, "rule": d.rule} for d in findings.get(r.id, [])],
            "conformance": [{"kind": c.kind, "name": c.name, "outcome": c.outcome, "measured": c.measured,
                             "expected": c.expected, "tolerance": c.tolerance, "deviation": _num(c.deviation),
                             "reason": c.reason,
                             "values": {k: _num(v) for k, v in sorted((c.values or {}).items())}}
                            for c in measured.get(r.id, [])],
        })
    return {u.id: {
        "unit_id": u.id, "order_id": u.order_id, "status": u.status, "verdict": u.verdict,
        "reasons": list(u.reasons or ()), "missing_views": list(u.missing_views or ()), "complete": u.complete,
        "model_sha256s": sorted({f["model_sha256"] for f in frames.get(u.id, []) if f["model_sha256"]}),
        "engines": sorted({f"{f['engine']}/{f['precision']}" for f in frames.get(u.id, []) if f["engine"]}),
        "frames": frames.get(u.id, []), "reviews": reviews.get(u.id, []),
        "dispositions": dispositions.get(u.id, []),
    } for u in units.values()}


def entry_hash(station_id: str, seq: int, unit_id: str, order_id: str, event: str, record_hash: str,
               prev_hash: str) -> str:
    return sha256_bytes(canonical_json([station_id, seq, unit_id, order_id, event, record_hash,
                                        prev_hash]).encode())


def append_links(session: Session, station_id: str, unit_ids: Sequence[str], event: str) -> list[str]:
    """Append one link per unit (in id order) to ``station_id``'s chain, inside ``session``'s transaction.

    The head row is locked first (``SELECT .. FOR UPDATE`` on PostgreSQL; SQLite has one writer), so two
    processes of one station cannot fork the chain; ``UNIQUE(station_id, seq)`` backs that up. Returns the
    new links' entry hashes.
    """
    records = unit_records(session, unit_ids)
    if not records:
        return []
    head = session.scalars(select(AuditHeadRow).where(AuditHeadRow.station_id == station_id)
                           .with_for_update()).first()
    if head is None:
        head = AuditHeadRow(station_id=station_id, seq=0, entry_hash=GENESIS, updated_at=utcnow())
        session.add(head)
        session.flush()
    seq, prev = head.seq, head.entry_hash
    now = utcnow()
    hashes = []
    links: list[dict[str, Any]] = []
    for unit_id in sorted(records):
        record = records[unit_id]
        text = canonical_json(record)
        record_hash = sha256_bytes(text.encode())
        seq += 1
        link = entry_hash(station_id, seq, unit_id, record["order_id"], event, record_hash, prev)
        links.append({"station_id": station_id, "seq": seq, "unit_id": unit_id, "order_id": record["order_id"],
                      "event": event, "record": text, "record_hash": record_hash, "prev_hash": prev,
                      "entry_hash": link, "created_at": now})
        prev = link
        hashes.append(link)
    # one executemany (the ORM would insert them one statement each, to learn ids nothing here needs)
    session.execute(AuditChainRow.__table__.insert(), links)  # type: ignore[attr-defined]
    head.seq, head.entry_hash, head.updated_at = seq, prev, now
    return hashes


@dataclass
class Problem:
    station_id: str
    seq: int | None
    unit_id: str
    what: str

    def __str__(self) -> str:
        where = f"link #{self.seq} of station {self.station_id}" if self.seq is not None else (
            f"station {self.station_id}" if self.station_id else "the database")
        return f"{where}{f' (unit {self.unit_id})' if self.unit_id else ''}: {self.what}"


@dataclass
class VerifyReport:
    stations: dict[str, int] = field(default_factory=dict)
    """Links per station."""
    units_checked: int = 0
    pending: list[str] = field(default_factory=list)
    """Open units with frames newer than their last link (their verdict is still being written)."""
    unsealed: list[str] = field(default_factory=list)
    """Units without a verdict and without a link yet."""
    legacy: list[str] = field(default_factory=list)
    """Units last written before the first link of any chain (recorded by a version without the chain):
    ``qcline audit seal`` chains them as they are now."""
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_broken(self) -> str | None:
        """The first problem found, in words (``None`` when the chain is intact)."""
        return str(self.problems[0]) if self.problems else None

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "stations": self.stations, "units_checked": self.units_checked,
                "pending": self.pending, "unsealed": self.unsealed, "legacy": self.legacy,
                "first_broken": self.first_broken,
                "problems": [{"station_id": p.station_id, "seq": p.seq, "unit_id": p.unit_id, "what": p.what,
                              "message": str(p)} for p in self.problems]}


def _difference(stored: dict[str, Any], live: dict[str, Any]) -> str:
    """Where two records differ, in words an auditor can follow."""
    for key in sorted(set(stored) | set(live)):
        if stored.get(key) == live.get(key):
            continue
        old, new = stored.get(key), live.get(key)
        if isinstance(old, list) and isinstance(new, list):
            if len(old) != len(new):
                return f"{key}: {len(old)} recorded in the chain, {len(new)} in the database now"
            for i, (a, b) in enumerate(zip(old, new, strict=True)):
                if a != b:
                    if isinstance(a, dict) and isinstance(b, dict):
                        return f"{key}[{i}].{_difference(a, b)}"
                    return f"{key}[{i}] was {a!r}, is {b!r}"
        if isinstance(old, dict) and isinstance(new, dict):
            return f"{key}.{_difference(old, new)}"
        return f"{key} was {old!r}, is {new!r}"
    return "equal"


def _is_pending(stored: dict[str, Any], live: dict[str, Any]) -> bool:
    """An open unit whose recorded frames are the link's frames plus newer ones, everything else equal: its
    next verdict (and link) is on its way through the writer."""
    if live.get("status") != "open":
        return False
    old, new = stored.get("frames", []), live.get("frames", [])
    rest_equal = all(stored.get(k) == live.get(k) for k in set(stored) | set(live) if k not in ("frames",
                                                                                                   "model_sha256s"))
    return rest_equal and len(new) > len(old) and new[:len(old)] == old


def verify(session: Session, order_id: str | None = None) -> VerifyReport:
    """Walk every station's chain, then compare each unit's latest link (of ``order_id``, or all) with its
    live record. Problems are listed in chain order; the first one is the first broken link."""
    report = VerifyReport()
    heads = {h.station_id: h for h in session.scalars(select(AuditHeadRow))}
    stations = sorted(set(heads) | set(session.scalars(select(AuditChainRow.station_id).distinct())))
    latest: dict[str, AuditChainRow] = {}
    for station in stations:
        prev, expected_seq, count = GENESIS, 1, 0
        for link in session.scalars(select(AuditChainRow).where(AuditChainRow.station_id == station)
                                    .order_by(AuditChainRow.seq)).yield_per(500):
            count += 1
            if link.seq != expected_seq:
                report.problems.append(Problem(station, link.seq, link.unit_id,
                                               f"link #{expected_seq} is missing (deleted?): the chain jumps "
                                               f"from #{expected_seq - 1} to #{link.seq}"))
            elif link.prev_hash != prev:
                report.problems.append(Problem(station, link.seq, link.unit_id,
                                               "names a predecessor hash that is not the previous link's: a link "
                                               "before it was edited, inserted or removed"))
            if sha256_bytes(link.record.encode()) != link.record_hash:
                report.problems.append(Problem(station, link.seq, link.unit_id,
                                               "its record was edited (record hash does not match)"))
            elif entry_hash(station, link.seq, link.unit_id, link.order_id, link.event, link.record_hash,
                            link.prev_hash) != link.entry_hash:
                report.problems.append(Problem(station, link.seq, link.unit_id,
                                               "its fields were edited (entry hash does not match)"))
            prev, expected_seq = link.entry_hash, link.seq + 1
            known = latest.get(link.unit_id)
            if known is None or (link.created_at, link.id) >= (known.created_at, known.id):
                latest[link.unit_id] = link
        head = heads.get(station)
        if head is None:
            report.problems.append(Problem(station, None, "", "the chain has links but no head row"))
        elif head.seq != expected_seq - 1 or head.entry_hash != prev:
            report.problems.append(Problem(station, head.seq, "",
                                           f"the head names link #{head.seq} but the chain ends at "
                                           f"#{expected_seq - 1}: links at the end were deleted or added"))
        report.stations[station] = count
    query = select(UnitRow.id, UnitRow.verdict, UnitRow.updated_at)
    if order_id is not None:
        query = query.where(UnitRow.order_id == order_id)
    rows = session.execute(query).all()
    units = {r[0]: r[1] for r in rows}
    updated = {r[0]: r[2] for r in rows}
    chain_start = session.scalar(select(func.min(AuditChainRow.created_at)))
    scope = {u for u in latest if order_id is None or latest[u].order_id == order_id}
    for unit_id in sorted(scope - set(units)):
        link = latest[unit_id]
        report.problems.append(Problem(link.station_id, link.seq, unit_id,
                                       "the unit is in the chain but no longer in the database (deleted)"))
    live = unit_records(session, sorted(set(units) & scope))
    for unit_id in sorted(set(units)):
        if unit_id not in scope:
            if units[unit_id] is not None and (chain_start is None or updated[unit_id] < chain_start):
                report.legacy.append(unit_id)
            elif units[unit_id] is not None:
                report.problems.append(Problem("", None, unit_id,
                                               "has a verdict but no link in any chain (inserted behind the "
                                               "store's back?)"))
            else:
                report.unsealed.append(unit_id)
            continue
        report.units_checked += 1
        link = latest[unit_id]
        stored = json.loads(link.record)
        if stored == live[unit_id]:
            continue
        if _is_pending(stored, live[unit_id]):
            report.pending.append(unit_id)
            continue
        changed = _difference(stored, live[unit_id])
        report.problems.append(Problem(link.station_id, link.seq, unit_id,
                                       f"the database no longer matches this link: {changed}"))
    report.problems.sort(key=lambda p: (p.seq is None, p.station_id, p.seq or 0, p.unit_id))
    return report


def unlinked_units(session: Session) -> list[str]:
    """Units with a verdict and no link in any chain (recorded before the chain existed)."""
    linked = select(AuditChainRow.unit_id).distinct()
    return list(session.scalars(select(UnitRow.id).where(UnitRow.verdict.is_not(None), UnitRow.id.not_in(linked))
                                .order_by(UnitRow.id)))


@dataclass(frozen=True)
class ChainLink:
    """A unit's latest link in its station's chain: what a certificate cites."""

    station_id: str
    seq: int
    entry_hash: str
    event: str
    at: str | None


def chain_hash(session: Session, unit_ids: Sequence[str]) -> dict[str, ChainLink]:
    """The latest link of each unit: station, sequence number and entry hash (for certificates)."""
    if not unit_ids:
        return {}
    newest = (select(AuditChainRow.unit_id, func.max(AuditChainRow.id).label("id"))
              .where(AuditChainRow.unit_id.in_(list(unit_ids))).group_by(AuditChainRow.unit_id).subquery())
    rows = session.scalars(select(AuditChainRow).join(newest, newest.c.id == AuditChainRow.id))
    return {r.unit_id: ChainLink(r.station_id, r.seq, r.entry_hash, r.event, _time(r.created_at)) for r in rows}
