"""QC analytics for the people who run the line: where is yield lost, and is the process in control?

Pure functions over a ``LineHistory`` (frames, units, findings, reviews of a time window, as the results
store reads them), so every figure is checked against hand-computed numbers in a test:

* Pareto of defect classes (findings that failed their frame or unit, and failed conformance rules),
* first-pass yield (units whose verdict came out PASS, of all judged units),
* defect rate per line / camera / shift as a p-chart: per subgroup (a time bucket) p = d / n, centre line
  p̄ = Σd / Σn, limits p̄ ± 3·sqrt(p̄(1 - p̄) / n) per subgroup (LCL clipped at 0), points outside flagged,
* rates per order, product family and model version,
* REVIEW overturn rate: of flagged frames an operator reviewed, how many were called a false alarm.

Lines are stations (the station id that chained the unit; "" when unknown). Shifts are named by the
hour a frame was captured (UTC), from ``ShiftPlan``.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

Bucket = Literal["hour", "shift", "day", "week"]


@dataclass(frozen=True)
class ShiftPlan:
    """Shift names by start hour (UTC), e.g. ``((6, "early"), (14, "late"), (22, "night"))``."""

    starts: tuple[tuple[int, str], ...] = ((6, "early"), (14, "late"), (22, "night"))

    def __post_init__(self) -> None:
        hours = [h for h, _ in self.starts]
        if not self.starts or hours != sorted(hours) or not all(0 <= h < 24 for h in hours):
            raise ValueError(f"shift start hours must be ascending in 0..23, got {hours}")

    def shift_of(self, at: datetime) -> tuple[str, datetime]:
        """(shift name, start of that shift instance): a night shift after midnight belongs to the day before."""
        hour = at.hour
        chosen = None
        for start, name in self.starts:
            if hour >= start:
                chosen = (start, name)
        day = at.replace(hour=0, minute=0, second=0, microsecond=0)
        if chosen is None:  # before the first start: the previous day's last shift
            start, name = self.starts[-1]
            return name, day - timedelta(days=1) + timedelta(hours=start)
        return chosen[1], day + timedelta(hours=chosen[0])


@dataclass(frozen=True)
class FrameRow:
    inspection_id: int
    unit_id: str
    order_id: str
    camera_id: str
    captured_at: datetime
    verdict: str
    model_sha256: str


@dataclass(frozen=True)
class UnitRow:
    unit_id: str
    order_id: str
    product_family: str
    verdict: str | None
    first_captured_at: datetime
    line: str = ""


@dataclass(frozen=True)
class FindingRow:
    inspection_id: int
    category: str
    """A defect class, or ``conformance:<kind>`` for a failed conformance rule."""
    outcome: str


@dataclass(frozen=True)
class ReviewRow:
    inspection_id: int
    decision: str


@dataclass
class LineHistory:
    frames: list[FrameRow] = field(default_factory=list)
    units: list[UnitRow] = field(default_factory=list)
    findings: list[FindingRow] = field(default_factory=list)
    reviews: list[ReviewRow] = field(default_factory=list)
    """The latest review of each reviewed inspection."""


@dataclass(frozen=True)
class ParetoBar:
    category: str
    count: int
    share: float
    cumulative: float


def pareto(history: LineHistory) -> list[ParetoBar]:
    """Failing findings per category, largest first (ties by name), with share and cumulative share."""
    counts = Counter(f.category for f in history.findings if f.outcome == "FAIL")
    total = sum(counts.values())
    bars, running = [], 0
    for category, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        running += count
        bars.append(ParetoBar(category, count, count / total, running / total))
    return bars


def first_pass_yield(history: LineHistory) -> tuple[float | None, int, int]:
    """(PASS / judged, PASS units, judged units); ``None`` without judged units."""
    judged = [u for u in history.units if u.verdict is not None]
    passed = sum(1 for u in judged if u.verdict == "PASS")
    return (passed / len(judged) if judged else None), passed, len(judged)


@dataclass(frozen=True)
class PPoint:
    subgroup: datetime
    n: int
    defective: int
    p: float
    ucl: float
    lcl: float
    out_of_control: bool


@dataclass(frozen=True)
class PChart:
    dimension: str
    key: str
    p_bar: float
    points: tuple[PPoint, ...]

    @property
    def out_of_control(self) -> list[PPoint]:
        return [p for p in self.points if p.out_of_control]


def bucket_start(at: datetime, bucket: Bucket, shifts: ShiftPlan) -> datetime:
    if bucket == "hour":
        return at.replace(minute=0, second=0, microsecond=0)
    if bucket == "shift":
        return shifts.shift_of(at)[1]
    day = at.replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=day.weekday()) if bucket == "week" else day


def p_chart(samples: Iterable[tuple[str, datetime, bool]], *, dimension: str, bucket: Bucket,
            shifts: ShiftPlan = ShiftPlan()) -> list[PChart]:
    """One p-chart per key from ``(key, time, defective)`` samples, subgroups by ``bucket``."""
    groups: dict[str, dict[datetime, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for key, at, defective in samples:
        cell = groups[key][bucket_start(at, bucket, shifts)]
        cell[0] += 1
        cell[1] += int(defective)
    charts = []
    for key in sorted(groups):
        cells = groups[key]
        n_total = sum(n for n, _ in cells.values())
        d_total = sum(d for _, d in cells.values())
        p_bar = d_total / n_total
        points = []
        for subgroup in sorted(cells):
            n, d = cells[subgroup]
            sigma = math.sqrt(p_bar * (1 - p_bar) / n)
            ucl, lcl = min(1.0, p_bar + 3 * sigma), max(0.0, p_bar - 3 * sigma)
            p = d / n
            points.append(PPoint(subgroup, n, d, p, ucl, lcl, p > ucl or p < lcl))
        charts.append(PChart(dimension, key, p_bar, tuple(points)))
    return charts


def p_charts(history: LineHistory, *, bucket: Bucket = "day", shifts: ShiftPlan = ShiftPlan()) -> list[PChart]:
    """Defect rate per camera (frames that failed), per line and per shift (units that failed)."""
    judged = [u for u in history.units if u.verdict is not None]
    charts = p_chart(((f.camera_id, f.captured_at, f.verdict == "FAIL") for f in history.frames),
                     dimension="camera", bucket=bucket, shifts=shifts)
    charts += p_chart(((u.line, u.first_captured_at, u.verdict == "FAIL") for u in judged),
                      dimension="line", bucket=bucket, shifts=shifts)
    charts += p_chart(((shifts.shift_of(u.first_captured_at)[0], u.first_captured_at, u.verdict == "FAIL")
                       for u in judged), dimension="shift", bucket="day" if bucket == "hour" else bucket,
                      shifts=shifts)
    return charts


@dataclass(frozen=True)
class Rate:
    dimension: str
    key: str
    total: int
    passed: int
    review: int
    failed: int

    @property
    def fail_rate(self) -> float:
        return self.failed / self.total if self.total else 0.0


def _rates(dimension: str, rows: Iterable[tuple[str, str | None]]) -> list[Rate]:
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for key, verdict in rows:
        if verdict is not None:
            counts[key][verdict] += 1
    return [Rate(dimension, key, sum(c.values()), c["PASS"], c["REVIEW"], c["FAIL"])
            for key, c in sorted(counts.items())]


def rates(history: LineHistory) -> list[Rate]:
    """Unit verdicts per order and product family; frame verdicts per model version."""
    return (_rates("order", ((u.order_id, u.verdict) for u in history.units))
            + _rates("product_family", ((u.product_family, u.verdict) for u in history.units))
            + _rates("model", ((f.model_sha256[:12] or "-", f.verdict) for f in history.frames)))


def overturn_rate(history: LineHistory) -> tuple[float | None, int, int]:
    """(false alarms / reviewed flagged frames, false alarms, reviewed flagged frames)."""
    flagged = {f.inspection_id for f in history.frames if f.verdict in ("REVIEW", "FAIL")}
    reviewed = [r for r in history.reviews if r.inspection_id in flagged]
    overturned = sum(1 for r in reviewed if r.decision == "false_alarm")
    return (overturned / len(reviewed) if reviewed else None), overturned, len(reviewed)


def summary(history: LineHistory, *, bucket: Bucket = "day", shifts: ShiftPlan = ShiftPlan(),
            since: datetime | None = None, until: datetime | None = None) -> dict[str, Any]:
    """Every figure, JSON-ready (what the API returns and the CSV / plots are written from)."""
    fpy, passed, judged = first_pass_yield(history)
    overturn, overturned, reviewed = overturn_rate(history)
    iso: Callable[[datetime | None], str | None] = lambda t: None if t is None else t.isoformat()  # noqa: E731
    return {
        "window": {"since": iso(since), "until": iso(until), "bucket": bucket,
                   "shifts": [{"start_hour": h, "name": n} for h, n in shifts.starts]},
        "frames": len(history.frames), "units": len(history.units),
        "first_pass_yield": {"value": fpy, "passed": passed, "judged": judged},
        "overturn_rate": {"value": overturn, "false_alarms": overturned, "reviewed": reviewed},
        "pareto": [vars(b) for b in pareto(history)],
        "p_charts": [{"dimension": c.dimension, "key": c.key, "p_bar": c.p_bar,
                      "points": [{**vars(p), "subgroup": p.subgroup.isoformat()} for p in c.points]}
                     for c in p_charts(history, bucket=bucket, shifts=shifts)],
        "rates": [{**vars(r), "fail_rate": r.fail_rate} for r in rates(history)],
    }

