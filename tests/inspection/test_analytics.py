"""QC analytics on a generated line history with known rates: every figure computed by hand below."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from inspection.analytics import (
    FindingRow,
    FrameRow,
    LineHistory,
    ReviewRow,
    ShiftPlan,
    UnitRow,
    first_pass_yield,
    overturn_rate,
    p_chart,
    p_charts,
    pareto,
    rates,
    summary,
)

DAY0 = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday


def camera_history() -> LineHistory:
    """Camera top: 100 frames a day for 5 days, 5, 4, 6, 5 and 20 of them FAIL. Camera side: 50 frames on
    day 0 (10 FAIL), 200 on day 1 (10 FAIL). Captured at 10:00 plus a second per frame."""
    frames: list[FrameRow] = []
    plan = {"top": [(100, 5), (100, 4), (100, 6), (100, 5), (100, 20)], "side": [(50, 10), (200, 10)]}
    for camera, days in plan.items():
        for day, (n, d) in enumerate(days):
            for i in range(n):
                frames.append(FrameRow(len(frames) + 1, f"U-{camera}-{day}-{i}", "O-1", camera,
                                       DAY0 + timedelta(days=day, hours=10, seconds=i), "FAIL" if i < d else "PASS",
                                       "a" * 64 if day < 2 else "b" * 64))
    return LineHistory(frames=frames)


def test_p_chart_limits_and_out_of_control_points_as_computed_by_hand() -> None:
    charts = {c.key: c for c in p_charts(camera_history(), bucket="day") if c.dimension == "camera"}
    top = charts["top"]
    # p-bar = 40 / 500 = 0.08; sigma = sqrt(0.08 * 0.92 / 100) = 0.0271293; UCL = 0.08 + 3 sigma = 0.1613879
    assert top.p_bar == pytest.approx(0.08)
    assert [p.ucl for p in top.points] == pytest.approx([0.1613879] * 5, abs=1e-6)
    assert [p.lcl for p in top.points] == [0.0] * 5  # 0.08 - 0.0813879 < 0: clipped
    assert [p.p for p in top.points] == pytest.approx([0.05, 0.04, 0.06, 0.05, 0.20])
    assert [p.subgroup for p in top.out_of_control] == [DAY0 + timedelta(days=4)]
    side = charts["side"]
    # p-bar = 20 / 250 = 0.08; n = 50: UCL = 0.08 + 3 sqrt(0.0736 / 50) = 0.1951000, p = 0.20 above it;
    # n = 200: UCL = 0.08 + 3 sqrt(0.0736 / 200) = 0.1375500, LCL = 0.0224500, p = 0.05 inside.
    assert side.p_bar == pytest.approx(0.08)
    assert [(p.ucl, p.lcl) for p in side.points] == [pytest.approx((0.1951000, 0.0), abs=1e-6),
                                                     pytest.approx((0.1375500, 0.0224500), abs=1e-6)]
    assert [p.out_of_control for p in side.points] == [True, False]


def test_p_chart_by_hour_and_week() -> None:
    samples = [("k", DAY0 + timedelta(hours=h, minutes=m), m == 0) for h in (8, 9) for m in range(10)]
    hourly = p_chart(samples, dimension="x", bucket="hour")[0]
    assert [(p.subgroup.hour, p.n, p.defective) for p in hourly.points] == [(8, 10, 1), (9, 10, 1)]
    weekly = p_chart([("k", DAY0 + timedelta(days=d), False) for d in range(9)], dimension="x", bucket="week")[0]
    assert [p.n for p in weekly.points] == [7, 2]


@pytest.mark.parametrize(("at", "shift", "start"), [
    (datetime(2026, 11, 2, 6, 0, tzinfo=UTC), "early", datetime(2026, 11, 2, 6, tzinfo=UTC)),
    (datetime(2026, 11, 2, 13, 59, tzinfo=UTC), "early", datetime(2026, 11, 2, 6, tzinfo=UTC)),
    (datetime(2026, 11, 2, 14, 0, tzinfo=UTC), "late", datetime(2026, 11, 2, 14, tzinfo=UTC)),
    (datetime(2026, 11, 2, 23, 0, tzinfo=UTC), "night", datetime(2026, 11, 2, 22, tzinfo=UTC)),
    (datetime(2026, 11, 3, 2, 0, tzinfo=UTC), "night", datetime(2026, 11, 2, 22, tzinfo=UTC)),  # after midnight
])
def test_shifts(at: datetime, shift: str, start: datetime) -> None:
    assert ShiftPlan().shift_of(at) == (shift, start)


def test_a_bad_shift_plan_is_refused() -> None:
    with pytest.raises(ValueError):
        ShiftPlan(((14, "late"), (6, "early")))


def unit_history() -> LineHistory:
    """10 units: 6 PASS, 1 REVIEW, 3 FAIL; order O-1 (family door) holds U0-U4, O-2 (family panel) U5-U9."""
    verdicts = ["PASS", "PASS", "FAIL", "REVIEW", "PASS", "PASS", "FAIL", "FAIL", "PASS", "PASS"]
    units = [UnitRow(f"U{i}", "O-1" if i < 5 else "O-2", "door" if i < 5 else "panel", v,
                     DAY0 + timedelta(hours=7 + 8 * (i % 3)), line="S1" if i % 2 else "S2")
             for i, v in enumerate(verdicts)]
    frames = [FrameRow(i + 1, u.unit_id, u.order_id, "top", u.first_captured_at, u.verdict or "PASS",
                       "a" * 64 if i < 5 else "b" * 64) for i, u in enumerate(units)]
    findings = [FindingRow(3, "scratch", "FAIL"), FindingRow(3, "dent", "PASS"), FindingRow(7, "scratch", "FAIL"),
                FindingRow(7, "scratch", "FAIL"), FindingRow(8, "conformance:colour", "FAIL"),
                FindingRow(8, "dent", "FAIL"), FindingRow(4, "dent", "REVIEW")]
    reviews = [ReviewRow(3, "confirm"), ReviewRow(4, "false_alarm"), ReviewRow(7, "false_alarm"),
               ReviewRow(8, "confirm"), ReviewRow(1, "false_alarm")]  # frame 1 PASSed: not a flagged frame
    return LineHistory(frames=frames, units=units, findings=findings, reviews=reviews)


def test_pareto_first_pass_yield_overturn_and_rates() -> None:
    history = unit_history()
    bars = pareto(history)
    assert [(b.category, b.count) for b in bars] == [("scratch", 3), ("conformance:colour", 1), ("dent", 1)]
    assert [b.cumulative for b in bars] == pytest.approx([0.6, 0.8, 1.0])
    assert first_pass_yield(history) == (0.6, 6, 10)
    assert overturn_rate(history) == (0.5, 2, 4)  # of frames 3, 4, 7, 8: 4 and 7 were false alarms
    by = {(r.dimension, r.key): r for r in rates(history)}
    assert (by["order", "O-1"].total, by["order", "O-1"].failed, by["order", "O-1"].review) == (5, 1, 1)
    assert by["product_family", "panel"].fail_rate == pytest.approx(0.4)
    assert by["model", "b" * 12].fail_rate == pytest.approx(0.4) and by["model", "a" * 12].failed == 1


def test_line_and_shift_charts_count_units() -> None:
    charts = {(c.dimension, c.key): c for c in p_charts(unit_history(), bucket="day")}
    # S1 holds the odd units U1 U3 U5 U7 U9: one FAIL (U7) of 5; S2 the even ones: two FAIL (U2, U6) of 5.
    assert charts["line", "S1"].p_bar == pytest.approx(0.2) and charts["line", "S2"].p_bar == pytest.approx(0.4)
    # 07:00 early (U0 U3 U6 U9), 15:00 late (U1 U4 U7), 23:00 night (U2 U5 U8)
    assert charts["shift", "early"].points[0].n == 4 and charts["shift", "night"].points[0].defective == 1


def test_summary_is_json_ready_and_empty_history_has_no_rates() -> None:
    import json

    data = summary(unit_history(), since=DAY0, until=DAY0 + timedelta(days=1))
    assert json.loads(json.dumps(data))["first_pass_yield"]["value"] == 0.6
    empty = summary(LineHistory())
    assert empty["first_pass_yield"] == {"value": None, "passed": 0, "judged": 0}
    assert empty["p_charts"] == [] and empty["pareto"] == []
    assert math.isclose(0.08 + 3 * math.sqrt(0.08 * 0.92 / 100), 0.1613879, abs_tol=1e-6)
