"""The shift report: verdicts, dispositions and yield per order, findings per class, for a time window,
some cameras and a shift's hours.

A supervisor asks "how did the early shift on line 3 do yesterday?", not "what is in the database": the
filters pick the frames (captured in ``[since, until)``, on these cameras, in these local hours) and the
report counts the units those frames belong to. Hours are judged in the plant's time zone, because a
shift is "06-14 local", whatever UTC says.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any

from sqlalchemy import select

from inspection.errors import QCError
from inspection.store.records import ClassFindings, check_counts
from inspection.store.repository import UNIT_OPEN, ResultsStore
from inspection.store.tables.results import DetectionRow, InspectionRow, OrderRow, UnitRow
from inspection.store.tables.reviews import UnitDispositionRow
from inspection.types import Verdict

DISPOSITIONS = ("release", "rework", "scrap")
_CHUNK = 500


def parse_shift(text: str) -> tuple[int, int]:
    """``"06-14"`` (06:00 to 14:00) or ``"22-06"`` (over midnight) as (start hour, end hour)."""
    try:
        start, end = (int(part) for part in text.replace(":00", "").split("-"))
    except ValueError:
        raise QCError(f"--shift must be START-END in whole hours, like 06-14 or 22-06; got {text!r}") from None
    if not (0 <= start <= 23 and 0 <= end <= 24) or start == end:
        raise QCError(f"--shift hours must be 0..24 and differ, got {text!r}")
    return start, end


def in_shift(hour: int, shift: tuple[int, int]) -> bool:
    start, end = shift
    return start <= hour < end if start < end else (hour >= start or hour < end)


@dataclass(frozen=True)
class ReportFilter:
    """Which frames count; every field optional. ``since``/``until`` are aware datetimes."""

    since: datetime | None = None
    until: datetime | None = None
    cameras: tuple[str, ...] = ()
    shift: tuple[int, int] | None = None
    tz: tzinfo = field(default=UTC)

    @property
    def active(self) -> bool:
        return bool(self.since or self.until or self.cameras or self.shift)

    @property
    def shift_hours(self) -> str | None:
        """The shift as it was given: ``"06-14"``."""
        return f"{self.shift[0]:02d}-{self.shift[1]:02d}" if self.shift else None

    def to_json(self) -> dict[str, Any]:
        return {"since": self.since.isoformat() if self.since else None,
                "until": self.until.isoformat() if self.until else None, "cameras": list(self.cameras),
                "shift": self.shift_hours, "timezone": str(self.tz)}


def _chunks(ids: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for i in range(0, len(ids), _CHUNK):
        yield ids[i:i + _CHUNK]


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


COUNT_COLUMNS = ("units", Verdict.PASS.value, Verdict.REVIEW.value, Verdict.FAIL.value, "open", *DISPOSITIONS,
                 "awaiting_disposition")
"""The names of ``YieldCounts.counts``, as its JSON keys and the CLI's columns say them."""


@dataclass(frozen=True)
class YieldCounts:
    """Units of one order (or of all of them) in the shift report: their verdicts, the open ones, the latest
    dispositions, flagged units not yet dispositioned, and the yields (``None`` while no unit is judged)."""

    units: int
    passed: int
    """Units whose verdict is PASS."""
    review: int
    """Units whose verdict is REVIEW."""
    failed: int
    """Units whose verdict is FAIL."""
    open: int
    release: int
    """Units whose latest disposition is ``release`` (likewise ``rework`` and ``scrap``)."""
    rework: int
    scrap: int
    awaiting_disposition: int
    """REVIEW or FAIL units without a disposition yet."""
    first_pass_yield: float | None
    """PASS units / judged units, to 4 places."""
    final_yield: float | None
    """Shipped units (PASS and not sent to rework or scrap, or released) / judged units, to 4 places."""

    def __post_init__(self) -> None:
        check_counts("a shift report row", units=self.units, passed=self.passed, review=self.review,
                     failed=self.failed, open=self.open, release=self.release, rework=self.rework, scrap=self.scrap,
                     awaiting_disposition=self.awaiting_disposition)

    @classmethod
    def of(cls, c: Counter[str]) -> YieldCounts:
        """From the counters ``shift_report`` keeps per order (``judged`` and ``shipped`` give the yields)."""
        return cls(c["units"], c[Verdict.PASS.value], c[Verdict.REVIEW.value], c[Verdict.FAIL.value], c["open"],
                   c["release"], c["rework"], c["scrap"], c["awaiting_disposition"],
                   _ratio(c[Verdict.PASS.value], c["judged"]), _ratio(c["shipped"], c["judged"]))

    @property
    def counts(self) -> tuple[int, ...]:
        """The counts in the order of ``COUNT_COLUMNS``."""
        return (self.units, self.passed, self.review, self.failed, self.open, self.release, self.rework, self.scrap,
                self.awaiting_disposition)

    def to_json(self) -> dict[str, Any]:
        return {**dict(zip(COUNT_COLUMNS, self.counts, strict=True)), "first_pass_yield": self.first_pass_yield,
                "final_yield": self.final_yield}


@dataclass(frozen=True)
class OrderYield:
    """One order's row of the shift report."""

    order_id: str
    customer_ref: str
    counts: YieldCounts

    def to_json(self) -> dict[str, Any]:
        return {"order_id": self.order_id, "customer_ref": self.customer_ref, **self.counts.to_json()}


@dataclass(frozen=True)
class ShiftReport:
    """The shift report (``shift_report``): the filter it was built for, a row per order (by id), the total
    and the findings per defect class (by name)."""

    filter: ReportFilter
    per_order: tuple[OrderYield, ...]
    total: YieldCounts
    per_class: tuple[ClassFindings, ...]

    def to_json(self) -> dict[str, Any]:
        return {"filter": self.filter.to_json(), "per_order": [r.to_json() for r in self.per_order],
                "total": self.total.to_json(), "per_class": [r.to_json() for r in self.per_class]}


def shift_report(store: ResultsStore, filt: ReportFilter | None = None) -> ShiftReport:
    """``per_order`` rows (units, PASS/REVIEW/FAIL/open, latest dispositions, flagged units not yet
    dispositioned, first-pass and final yield), a ``total`` row, ``per_class`` findings, and the filter.

    First-pass yield: PASS units / judged units (what the line did by itself). Final yield: units shipped
    (PASS and not sent to rework or scrap, or released by an operator) / judged units.
    """
    filt = filt or ReportFilter()
    with store._session("building the report") as session:
        query = select(InspectionRow.id, InspectionRow.unit_id, InspectionRow.captured_at)
        if filt.since:
            query = query.where(InspectionRow.captured_at >= filt.since)
        if filt.until:
            query = query.where(InspectionRow.captured_at < filt.until)
        if filt.cameras:
            query = query.where(InspectionRow.camera_id.in_(filt.cameras))
        inspection_ids: list[int] = []
        unit_ids: set[str] = set()
        if filt.active:
            for iid, uid, captured in session.execute(query.execution_options(yield_per=5000)):
                if filt.shift and not in_shift(captured.astimezone(filt.tz).hour, filt.shift):
                    continue
                inspection_ids.append(iid)
                unit_ids.add(uid)
            units = [row for chunk in _chunks(sorted(unit_ids))
                     for row in session.execute(select(UnitRow.id, UnitRow.order_id, UnitRow.verdict, UnitRow.status)
                                                .where(UnitRow.id.in_(chunk)))]
        else:
            units = list(session.execute(select(UnitRow.id, UnitRow.order_id, UnitRow.verdict, UnitRow.status)))
        latest: dict[str, str] = {}
        disp_query = select(UnitDispositionRow.unit_id, UnitDispositionRow.disposition).order_by(UnitDispositionRow.id)
        for chunk in (_chunks(sorted(unit_ids)) if filt.active else [None]):
            dq = disp_query if chunk is None else disp_query.where(UnitDispositionRow.unit_id.in_(chunk))
            for uid, disposition in session.execute(dq):
                latest[uid] = disposition  # ordered by id: the last one wins
        orders = {oid: cref for oid, cref in session.execute(select(OrderRow.id, OrderRow.customer_ref))}
        per_class: dict[str, dict[str, Any]] = defaultdict(lambda: {"counted": 0, "uncertain": 0, "frames": set(),
                                                                      "units": set()})
        det_query = (select(DetectionRow.class_name, DetectionRow.outcome, DetectionRow.inspection_id,
                            InspectionRow.unit_id)
                     .join(InspectionRow, InspectionRow.id == DetectionRow.inspection_id))
        for chunk in (_chunks(inspection_ids) if filt.active else [None]):
            q = det_query if chunk is None else det_query.where(DetectionRow.inspection_id.in_(chunk))
            for cls, outcome, iid, uid in session.execute(q.execution_options(yield_per=5000)):
                entry = per_class[cls]
                entry["uncertain" if outcome == Verdict.REVIEW.value else "counted"] += 1
                entry["frames"].add(iid)
                entry["units"].add(uid)

    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for uid, oid, verdict, status in units:
        c = counts[oid]
        c["units"] += 1
        if status == UNIT_OPEN:
            c["open"] += 1
        if verdict:
            c[verdict] += 1
            c["judged"] += 1
        disposition = latest.get(uid, "")
        if disposition:
            c[disposition] += 1
        elif verdict in (Verdict.REVIEW.value, Verdict.FAIL.value):
            c["awaiting_disposition"] += 1
        shipped = disposition == "release" or (verdict == Verdict.PASS.value and disposition not in ("rework", "scrap"))
        if shipped:
            c["shipped"] += 1

    order_ids = sorted(counts) if filt.active else sorted(orders)
    total: Counter[str] = Counter()
    for c in counts.values():
        total.update(c)
    return ShiftReport(
        filter=filt,
        per_order=tuple(OrderYield(oid, orders.get(oid, ""), YieldCounts.of(counts[oid])) for oid in order_ids),
        total=YieldCounts.of(total),
        per_class=tuple(ClassFindings(cls, r["counted"], r["uncertain"], len(r["frames"]), len(r["units"]))
                        for cls, r in sorted(per_class.items())))
