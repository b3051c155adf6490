"""End to end on a simulated line: the line simulator's PLC (a pymodbus server) and RTSP cameras (GStreamer on
loopback) against a real ``qcline station run`` process. Every trigger is answered once, in order, through the
result-register handshake; judged units get a verdict, a unit the station has no order for is answered with
the error code, never left silent."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from drills.cameras import INSTALL_HINT, rtsp_unavailable
from drills.line_simulator import SimUnit, demo_units, register_units, run_line
from inspection.settings import load_settings

pytestmark = [pytest.mark.slow, pytest.mark.rtsp]


def test_units_on_a_simulated_line_are_each_answered_once_in_order(tmp_path: Path) -> None:
    why = rtsp_unavailable()
    if why is not None:
        pytest.skip(f"no RTSP camera for the line test ({why}); {INSTALL_HINT}")
    data_dir = tmp_path / "data"
    settings = load_settings(data_dir=data_dir)
    steel, blanks = demo_units(4, tmp_path / "frames", views=("top", "bottom"))  # U-1001-A .. U-1002-B
    stranger = SimUnit(4, "U-NOBODY-1", "", dict(steel[0].views), known=False)
    plan = [*steel[:2], stranger, *steel[2:]]
    register_units(settings, plan)
    out = io.StringIO()
    report, rtsp = run_line(plan, blanks, {"QC_DATA_DIR": str(data_dir)}, tmp_path, rate=40.0, out=out,
                            rtsp=True)
    assert rtsp
    figures = report.figures()
    assert figures["triggers"] == 5 and figures["unanswered"] == 0, (figures, out.getvalue())
    assert figures["doubled"] == 0 and figures["stray"] == 0 and figures["in_order"], figures
    by_unit = {a.unit_id: a for a in report.answers}
    assert [a.unit_id for a in report.answers] == [u.unit_id for u in plan]
    for unit in steel:
        assert by_unit[unit.unit_id].verdict in {"PASS", "REVIEW", "FAIL"}, (unit.unit_id, by_unit[unit.unit_id])
    assert by_unit[stranger.unit_id].verdict == "ERROR", by_unit[stranger.unit_id]
    assert all(a.latency_ms is not None and a.latency_ms > 0 for a in report.answers)
    assert stranger.unit_id in out.getvalue()
