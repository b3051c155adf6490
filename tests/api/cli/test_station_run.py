"""``qcline station run`` as a real process: cameras opened from the station file, figures written for
``qcline station status``, and a clean stop on SIGTERM (exit 0, the status file's last word)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from api.cli.main import app
from tests.api.http.test_line import write_clip
from tests.api.processes import REPO, station_env
from tests.builders import Candidate, tiny_package


def test_station_run_holds_cameras_reports_them_and_stops_on_sigterm(tmp_path: Path) -> None:
    model = tiny_package(tmp_path / "tiny-model", [Candidate(32, 32, 16, 16, 0, 0.9)])
    clip = write_clip(tmp_path / "top.avi")
    station = tmp_path / "station.yaml"
    station.write_text(f"station: press-3\ncameras:\n  - {{name: top, url: '{clip}'}}\n"
                       "  - {name: side, url: 'rtsp://127.0.0.1:9/none', reconnect: {min_s: 0.1, max_s: 0.5}}\n"
                       "triggers: []\n")
    data = tmp_path / "data"
    env = station_env(data, model)
    log = tmp_path / "station.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "api.cli", "station", "run", "--config", str(station)],
                                   env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        status_file = data / "line" / "status.json"
        deadline = time.monotonic() + 90
        figures: dict[str, dict[str, Any]] = {}
        while time.monotonic() < deadline and process.poll() is None:
            if status_file.exists():
                figures = {c["name"]: c for c in json.loads(status_file.read_text())["cameras"]}
                if int(figures.get("top", {}).get("frames_in", 0)) > 0 and int(figures["side"]["reconnects"]) > 0:
                    break
            time.sleep(0.2)
        assert process.poll() is None, log.read_text()
        assert int(figures["top"]["frames_in"]) > 0 and figures["top"]["connected"], figures
        assert not figures["side"]["connected"] and "rtsp://127.0.0.1:9" in str(figures["side"]["last_error"])

        result = CliRunner().invoke(app, ["station", "status", "--data-dir", str(data), "--json"])
        line = json.loads(result.stdout)["line"]
        assert line["running"] and {c["name"] for c in line["cameras"]} == {"top", "side"}
        text = CliRunner().invoke(app, ["station", "status", "--data-dir", str(data)]).stdout
        assert "line station press-3: running" in text and "camera side" in text and "DOWN" in text

        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert "line station stopped" in log.read_text()


def test_station_run_refuses_a_bad_file_in_one_line(tmp_path: Path) -> None:
    station = tmp_path / "station.yaml"
    station.write_text("station: s\ncameras:\n  - name: top\n    url: ftp://nope\n")
    result = subprocess.run([sys.executable, "-m", "api.cli", "station", "run", "--config", str(station)],
                            env=station_env(tmp_path / "data", tmp_path / "no-model"), capture_output=True, text=True,
                            cwd=REPO, timeout=120)
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"{station}, line 4, cameras[0].url" in lines[0].replace("\n", ""), result.stderr
