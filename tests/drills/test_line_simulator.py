"""The line simulator's PLC side against the station's real result handshake (``PlcOutput`` over Modbus TCP):
the simulated PLC announces units in its trigger registers and takes every result the station presents,
once, in order, acknowledging as a PLC program does."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest
from pymodbus.client import ModbusTcpClient

from drills.cameras import MjpegCamera, blank_frame, scene_frames
from drills.line_simulator import (
    RESULT_REGISTERS,
    TRIGGER_REGISTERS,
    LineAnswer,
    RunReport,
    SimulatedPlc,
    SimUnit,
    demo_units,
)
from drills.peers import wait_until
from inspection.signals.handshake import PlcOutput
from inspection.signals.modbus import ModbusBackend
from inspection.types import Verdict
from tests.inspection.signals.records import unit_verdict


def _words_text(words: list[int]) -> str:
    return b"".join(w.to_bytes(2, "big") for w in words).rstrip(b"\0").decode()


def test_trigger_registers_hold_the_unit_before_the_counter_moves() -> None:
    seen: list[tuple[int, str]] = []
    with SimulatedPlc() as plc:
        station = ModbusTcpClient("127.0.0.1", port=plc.port)
        assert station.connect()
        try:
            for unit in ("U-1", "U-1002-A-ab0", "U-3"):
                plc.trigger(unit)
                regs = station.read_holding_registers(TRIGGER_REGISTERS["counter"], count=11).registers
                seen.append((regs[0], _words_text(regs[1:11])))
        finally:
            station.close()
        assert set(plc.triggered_at) == {"U-1", "U-1002-A-ab0", "U-3"}
    assert seen == [(1, "U-1"), (2, "U-1002-A-ab0"), (3, "U-3")]


def _take(plc: SimulatedPlc, n: int) -> list[LineAnswer]:
    got: list[LineAnswer] = []
    assert wait_until(lambda: plc.answers.qsize() >= n, 20), f"the PLC took {plc.answers.qsize()} of {n} results"
    while not plc.answers.empty():
        got.append(plc.answers.get_nowait())
    return got


def test_plc_program_takes_each_result_once_in_order_through_the_four_step_handshake() -> None:
    verdicts = [Verdict.PASS, Verdict.FAIL, Verdict.REVIEW, Verdict.PASS, Verdict.FAIL]
    with SimulatedPlc() as plc:
        output = PlcOutput(ModbusBackend("127.0.0.1", plc.port), ack_timeout_s=5.0, heartbeat_s=0.5)
        try:
            for i, verdict in enumerate(verdicts):
                plc.trigger(f"U-{i}")
                output.submit_unit_verdict(unit_verdict(f"U-{i}", verdict))
            answers = _take(plc, len(verdicts))
            assert wait_until(lambda: output.stats().acknowledged == len(verdicts), 10)
            assert wait_until(lambda: plc.read("ack") == 0, 5), "the PLC program did not clear ack (step 4)"
            stats = output.stats()
        finally:
            output.close()
    assert [a.unit_id for a in answers] == [f"U-{i}" for i in range(len(verdicts))]
    assert [a.verdict for a in answers] == [v.value for v in verdicts]
    assert [a.sequence for a in answers] == [1, 2, 3, 4, 5]
    assert all(a.latency_ms is not None and a.latency_ms >= 0 for a in answers)
    assert stats.ack_timeouts == 0 and stats.dropped == 0


def test_sequence_handshake_leaves_the_ack_and_a_result_without_trigger_has_no_latency() -> None:
    with SimulatedPlc(four_step=False) as plc:
        output = PlcOutput(ModbusBackend("127.0.0.1", plc.port), mode="sequence", ack_timeout_s=5.0)
        try:
            output.submit_unit_verdict(unit_verdict("U-untriggered", Verdict.FAIL))
            plc.trigger("U-2")
            output.submit_unit_verdict(unit_verdict("U-2", Verdict.PASS))
            answers = _take(plc, 2)
            assert wait_until(lambda: output.stats().acknowledged == 2, 10)
            assert plc.read("ack") == answers[-1].sequence
        finally:
            output.close()
    assert [(a.unit_id, a.verdict) for a in answers] == [("U-untriggered", "FAIL"), ("U-2", "PASS")]
    assert answers[0].latency_ms is None and answers[1].latency_ms is not None


def test_run_report_counts_unanswered_doubled_late_and_out_of_order() -> None:
    units = [SimUnit(i, f"U-{i}", "O-1", {}) for i in range(4)]
    triggered = {f"U-{i}": float(i) for i in range(4)}
    answers = [LineAnswer("U-1", "PASS", 100.0), LineAnswer("U-0", "FAIL", 2000.0), LineAnswer("U-1", "PASS", 120.0),
               LineAnswer("U-9", "PASS", None)]
    figures = RunReport(units, triggered, answers, budget_ms=1500.0).figures()
    assert figures["triggers"] == 4 and figures["answered"] == 2 and figures["unanswered"] == 2
    assert figures["unanswered_units"] == ["U-2", "U-3"]
    assert figures["doubled"] == 1 and figures["stray"] == 1 and figures["late"] == 1
    assert figures["in_order"] is False
    assert figures["verdicts"] == {"PASS": 3, "FAIL": 1}
    assert figures["latency_ms"]["n"] == 3
    clean = RunReport(units[:2], {"U-0": 0.0, "U-1": 1.0},
                      [LineAnswer("U-0", "PASS", 50.0), LineAnswer("U-1", "REVIEW", 60.0)], 1500.0).figures()
    assert clean["unanswered"] == clean["doubled"] == clean["late"] == clean["stray"] == 0 and clean["in_order"]


def test_result_registers_match_the_station_defaults() -> None:
    from inspection.signals.modbus import DEFAULT_REGISTERS

    assert {k: v for k, v in RESULT_REGISTERS.items() if k in DEFAULT_REGISTERS} == DEFAULT_REGISTERS


def test_without_gstreamer_the_cameras_fall_back_to_mjpeg_and_say_so(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import drills.line_simulator as sim

    monkeypatch.setattr(sim, "rtsp_unavailable", lambda: "/usr/bin/python3 not found")
    blank = blank_frame(tmp_path, (64, 48))
    scene = scene_frames([blank], tmp_path / "scene", size=(64, 48))
    with sim.open_cameras({"top": blank}, fps=10) as (cameras, rtsp, note):
        assert not rtsp and "/usr/bin/python3 not found" in note and "MJPEG" in note
        camera = cameras["top"]
        assert isinstance(camera, MjpegCamera) and camera.url.startswith("http://127.0.0.1:")
        camera.show(scene)
        cap = cv2.VideoCapture(camera.url, cv2.CAP_FFMPEG)
        try:
            ok, image = cap.read()
        finally:
            cap.release()
    assert ok and image.shape == (48, 64, 3)


def test_demo_units_cycle_the_manifest_with_fresh_ids_and_one_frame_size_per_camera(tmp_path: Path) -> None:
    units, blanks = demo_units(13, tmp_path, run_tag="ab", views=("top", "bottom", "panel"))
    ids = [u.unit_id for u in units]
    assert len(set(ids)) == 13 and all(len(i) <= 20 for i in ids)
    assert ids[0] == "U-1001-A-ab0" and ids[10] == "U-1007-A-ab0"
    assert ids[11] == "U-1001-A-ab1"  # the second lap
    assert {u.order_id for u in units} >= {"ORD-24-1001", "ORD-24-1005"}
    for unit in units:
        for view, path in unit.views.items():
            image = cv2.imread(str(path))
            blank = cv2.imread(str(blanks[view]))
            assert image is not None and image.shape == blank.shape, (unit.unit_id, view)
    assert set(units[0].views) == {"top", "bottom"} and set(units[10].views) == {"panel"}
