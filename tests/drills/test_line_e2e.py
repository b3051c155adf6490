"""End to end on a simulated line: the line simulator's PLC (a pymodbus server), or its MES publishing triggers
on MQTT (Mosquitto), and its RTSP cameras (GStreamer on loopback) against a real ``qcline station run`` process.
Every trigger is answered once, in order, through the result-register handshake or the MQTT answer; a unit the
station has no order for is answered with an error that says why, never left silent.

The frames decide the verdicts, so they also prove each unit was judged on its own frames: units of the
brushed-stainless order (any scratch fails it) alternate between an empty belt (nothing to find: PASS) and a
NEU-DET scratch on the top camera (FAIL). A frame bound to the unit before or after would flip the verdict."""

from __future__ import annotations

import io
import secrets
from pathlib import Path

import pytest

from drills.cameras import INSTALL_HINT, blank_frame, rtsp_unavailable, scene_frames
from drills.line_simulator import DEMO_DIR, SimUnit, register_units, run_line
from inspection.settings import load_settings
from tests.inspection.signals.peers import BROKER_HOST, BROKER_PORT, broker_reachable

pytestmark = [pytest.mark.slow, pytest.mark.rtsp]

ORDER = "ORD-24-1001"  # brushed-stainless: required views top and bottom, scratches critical


@pytest.mark.parametrize("channel", ["modbus", "mqtt"])
def test_units_on_a_simulated_line_are_each_answered_once_in_order_on_their_own_frames(tmp_path: Path,
                                                                                        channel: str) -> None:
    why = rtsp_unavailable()
    if why is not None:
        pytest.skip(f"no RTSP camera for the line test ({why}); {INSTALL_HINT}")
    if channel == "mqtt" and not broker_reachable():
        pytest.skip(f"no MQTT broker on {BROKER_HOST}:{BROKER_PORT} for the MES channel: install and start Mosquitto")
    data_dir = tmp_path / "data"
    frames = tmp_path / "frames"
    blanks = {view: blank_frame(frames / view, (200, 200)) for view in ("top", "bottom")}
    scratch = scene_frames([DEMO_DIR / "frames" / "scratches_100.jpg"], frames / "scratch", size=(200, 200))[0]
    tag = secrets.token_hex(2)
    clean = {"top": blanks["top"], "bottom": blanks["bottom"]}
    scratched = {"top": scratch, "bottom": blanks["bottom"]}
    plan = [SimUnit(0, f"U-{tag}-1", ORDER, clean), SimUnit(1, f"U-{tag}-2", ORDER, scratched),
            SimUnit(2, f"U-{tag}-NOBODY", "", clean, known=False),
            SimUnit(3, f"U-{tag}-3", ORDER, clean), SimUnit(4, f"U-{tag}-4", ORDER, scratched)]
    register_units(load_settings(data_dir=data_dir), plan)
    out = io.StringIO()
    # the unit is in view 0.8 s before its trigger: far more than the cameras' own latency, also on a loaded machine
    report, rtsp = run_line(plan, blanks, {"QC_DATA_DIR": str(data_dir)}, tmp_path, rate=30.0, settle_s=0.8, out=out,
                            rtsp=True, channel=channel)
    seen = out.getvalue() + "\nstation log:\n" + (tmp_path / "station.log").read_text(errors="replace")[-3000:]
    assert rtsp
    figures = report.figures()
    assert figures["triggers"] == 5 and figures["unanswered"] == 0, (figures, seen)
    assert figures["doubled"] == 0 and figures["stray"] == 0 and figures["in_order"], (figures, seen)
    assert [a.unit_id for a in report.answers] == [u.unit_id for u in plan], seen
    assert [a.verdict for a in report.answers] == ["PASS", "FAIL", "ERROR", "PASS", "FAIL"], seen
    assert report.answers[2].error not in (0, "", None)  # the error register / the answer's error says why
    assert all(a.latency_ms is not None and a.latency_ms > 0 for a in report.answers)
    assert f"U-{tag}-NOBODY" in out.getvalue()
