"""``qcline demo --line``: units of the demo orders pass a station on a simulated line, and each verdict is
printed as the line hears it (from the PLC's result registers).

The pieces are the line simulator's (``drills.line_simulator``): the simulated PLC on a free loopback port,
one RTSP camera per view (``top``, ``bottom``, ``panel``; HTTP MJPEG where GStreamer is absent), the demo
order book imported into the station's store with the run's units opened under their orders. The station is a
real ``qcline station run --config <file>`` process on the station config file the simulator writes, with
the data folder of the settings (``QC_DATA_DIR``), so the units show up on the review page afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from drills.line_simulator import (
    DEMO_DIR,
    NEU_DET,
    Line,
    RunReport,
    SimulatedPlc,
    SimUnit,
    demo_units,
    modbus_trigger,
    open_cameras,
    print_answer,
    register_units,
    run_units,
    station_config,
)
from drills.peers import wait_until

DEMO_VIEWS = ("top", "bottom", "panel")


class StationError(RuntimeError):
    """The station under test did not start or died: no figures."""


@contextlib.contextmanager
def station_process(config: Path, env: Mapping[str, str], *, log_path: Path, ready: Any,
                    timeout_s: float = 90.0) -> Iterator[subprocess.Popen[bytes]]:
    """``qcline station run --config <config>`` as a subprocess (its output to ``log_path``), up once
    ``ready()`` holds; stopped with SIGINT (then SIGTERM / SIGKILL) on exit."""
    log = log_path.open("wb")
    process = subprocess.Popen([sys.executable, "-m", "api.cli", "station", "run", "--config", str(config)],
                               env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
    try:
        if not wait_until(lambda: process.poll() is not None or ready(), timeout_s, 0.1) or process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise StationError(f"the station did not come up (exit {process.poll()}); its log ends:\n{tail}")
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(10)
        log.close()


def calibrate_panel(env: Mapping[str, str]) -> None:
    """The demo's panel camera calibrated as ``qcline demo`` does it (colour from the white tile, px/mm from the
    checkerboard), so the painted doors are judged on colour and size, not sent to review as uncalibrated."""
    frames = DEMO_DIR / "frames"
    for args in (["calibrate", "colour", str(frames / "calib_white.png"), "--camera", "panel",
                  "--patch", "0.02,0.025,0.095,0.1", "--reference", "Lab(90, 0, 0)", "--actor", "demo"],
                 ["calibrate", "scale", str(frames / "calib_checkerboard.png"), "--camera", "panel",
                  "--checkerboard", "7x5", "--square-mm", "40", "--actor", "demo"]):
        done = subprocess.run([sys.executable, "-m", "api.cli", *args], env={**os.environ, **env},
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise StationError(f"qcline {' '.join(args[:2])} failed: {done.stderr.strip()[-500:]}")


def summary_lines(report: RunReport, *, rate: float, rtsp: bool) -> list[str]:
    f = report.figures()
    lat = f["latency_ms"]
    counts = ", ".join(f"{k} {v}" for k, v in sorted(f["verdicts"].items()))
    lines = [f"{f['answered']} of {f['triggers']} units answered ({counts}) at {rate:g} units/min over "
             f"{'RTSP' if rtsp else 'HTTP MJPEG'} cameras"]
    if lat.get("n"):
        lines.append(f"trigger -> answer: p50 {lat['p50']} ms, p99 {lat['p99']} ms, max {lat['max']} ms "
                     f"(budget {f['budget_ms']:g} ms, {f['late']} late)")
    problems = [f"{f['unanswered']} never answered" if f["unanswered"] else "",
                f"{f['doubled']} answered twice" if f["doubled"] else "",
                "answers out of order" if not f["in_order"] else ""]
    lines.extend(p for p in problems if p)
    return lines


def run_demo(*, units: int = 10, rate: float = 60.0, settle_s: float = 0.3, fps: int = 25,
             data_dir: Path | None = None, as_json: bool = False, out: TextIO = sys.stdout,
             err: TextIO = sys.stderr) -> int:
    """The whole demo; returns the exit code (0: every unit answered once, in order)."""
    from inspection.settings import load_settings

    settings = load_settings(data_dir=data_dir) if data_dir else load_settings()
    env = {"QC_DATA_DIR": str(settings.data_dir)}
    with tempfile.TemporaryDirectory(prefix="qcline-line-") as tmp:
        work = Path(tmp)
        dataset = NEU_DET if (NEU_DET / "images").is_dir() else None
        plan, blanks = demo_units(units, work / "frames", views=DEMO_VIEWS, dataset=dataset)
        err.write(f"qcline demo --line: {units} units of the demo orders at {rate:g}/min, "
                  f"frames from {'NEU-DET (' + str(dataset) + ')' if dataset else 'the bundled demo frames'}, "
                  f"data {settings.data_dir}\n")
        register_units(settings, plan)
        calibrate_panel(env)
        try:
            report, rtsp = _run(plan, blanks, env, work, rate=rate, settle_s=settle_s, fps=fps, out=out, err=err)
        except StationError as e:
            err.write(f"error: {e}\n")
            return 2
    f = report.figures()
    if as_json:
        out.write(json.dumps({"demo": "line", "rtsp": rtsp, "rate_per_min": rate, **f}) + "\n")
    else:
        for line in summary_lines(report, rate=rate, rtsp=rtsp):
            out.write(line + "\n")
    return 0 if f["unanswered"] == 0 and f["doubled"] == 0 and f["in_order"] else 1


def _run(plan: Sequence[SimUnit], blanks: Mapping[str, Path], env: Mapping[str, str], work: Path, *, rate: float,
         settle_s: float, fps: int, out: TextIO, err: TextIO) -> tuple[RunReport, bool]:
    with open_cameras(blanks, fps=fps) as (cameras, rtsp, note), SimulatedPlc() as plc:
        if note:
            err.write(note + "\n")
        config = station_config(work / "station.yaml", station="demo-line",
                                cameras={view: camera.url for view, camera in cameras.items()},
                                triggers=[modbus_trigger(plc.port, plc)])

        def ready() -> bool:
            return plc.read("ready") == 1 and all(c.clients() > 0 for c in cameras.values())

        with station_process(config, {**env, "QC_STATION_CONFIG": str(config)}, log_path=work / "station.log",
                             ready=ready):
            time.sleep(0.5)  # the first frames decoded on every camera
            out.write(f"  {'unit':<20} {'order':<12} {'verdict':<7} {'latency':>10}\n")
            line = Line(cameras, dict(blanks), rtsp, plc, note)
            report = run_units(line, plan, rate_per_min=rate, settle_s=settle_s,
                               on_answer=lambda a, u: print_answer(a, u, out))
    return report, rtsp
