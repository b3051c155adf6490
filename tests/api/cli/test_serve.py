"""``qcline keys`` and ``qcline serve`` as users run them: a real process on a real port."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from api.cli.main import app
from tests.api.conftest import free_port, jpeg

REPO = Path(__file__).resolve().parents[3]
DEMO_ORDERS = REPO / "api" / "demo" / "orders.yaml"


@pytest.mark.parametrize("role", ["camera", "operator", "engineer", "admin"])
def test_keys_create_prints_the_contract_json(tmp_path: Path, role: str) -> None:
    result = CliRunner().invoke(app, ["keys", "create", "--role", role, "--json", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["role"] == role and body["key"].startswith("qck_") and len(body["key"]) > 40


def test_keys_list_and_revoke(tmp_path: Path) -> None:
    runner = CliRunner()
    data = ["--data-dir", str(tmp_path)]
    created = json.loads(runner.invoke(app, ["keys", "create", "--role", "operator", "--name", "Ann", "--json",
                                             *data]).stdout)
    listed = json.loads(runner.invoke(app, ["keys", "list", "--json", *data]).stdout)
    assert listed[0]["name"] == "Ann" and created["key"] not in json.dumps(listed)
    assert runner.invoke(app, ["keys", "revoke", str(created["id"]), *data]).exit_code == 0
    assert json.loads(runner.invoke(app, ["keys", "list", "--json", *data]).stdout)[0]["revoked_at"]
    unknown = subprocess.run([sys.executable, "-m", "api.cli", "keys", "revoke", "99", *data], capture_output=True,
                             text=True)
    assert unknown.returncode == 3 and "does not exist" in unknown.stderr


def test_keys_create_refuses_an_unknown_role(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "api.cli", "keys", "create", "--role", "boss", "--data-dir",
                             str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 1 and "must be one of" in result.stderr


@pytest.mark.slow
def test_serve_answers_cameras_and_flushes_on_sigterm(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QC_")} | {"QC_DATA_DIR": str(tmp_path / "d"),
                                                                             "QC_METRICS_PUBLIC": "true"}
    qcline = [sys.executable, "-m", "api.cli"]
    subprocess.run([*qcline, "orders", "import", str(DEMO_ORDERS)], env=env, check=True, capture_output=True)
    key = json.loads(subprocess.run([*qcline, "keys", "create", "--role", "camera", "--json"], env=env, check=True,
                                    capture_output=True, text=True).stdout)["key"]
    port = free_port()
    server = subprocess.Popen([*qcline, "serve", "--host", "127.0.0.1", "--port", str(port)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        ready = None
        while time.monotonic() < deadline:
            try:
                ready = httpx.get(f"{base}/readyz", timeout=2)
                if ready.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        assert ready is not None and ready.status_code == 200, "service never became ready"
        assert ready.json()["name"] == "neu-det-yolov8n-416"
        assert httpx.get(f"{base}/docs").status_code == 401  # behind a key unless QC_DOCS_PUBLIC
        frame = REPO / "api" / "demo" / "frames" / "scratches_100.jpg"
        r = httpx.post(f"{base}/v1/frames", headers={"Authorization": f"Bearer {key}", "Idempotency-Key": "t-1"},
                       data={"unit_id": "U-cli", "order_id": "ORD-24-1001", "camera_id": "top",
                             "captured_at": "2026-11-26T08:00:00Z"},
                       files={"image": ("scratches_100.jpg", frame.read_bytes(), "image/jpeg")}, timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["verdict"] == "FAIL" and r.json()["detections"][0]["class"] == "scratches"
        r = httpx.post(f"{base}/v1/frames", headers={"Authorization": f"Bearer {key}"},
                       data={"unit_id": "U-cli2", "order_id": "ORD-24-1001", "camera_id": "top"},
                       files={"image": ("x.jpg", jpeg(200, 64, 64), "image/jpeg")}, timeout=30)
        assert r.status_code == 200
        metrics = httpx.get(f"{base}/metrics").text
        assert "qcline_frames_total" in metrics and "qcline_request_duration_seconds_bucket" in metrics
    finally:
        server.send_signal(signal.SIGTERM)
        output = server.communicate(timeout=60)[0]
    # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught (exit status -15)
    assert server.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output, output
    shown = subprocess.run([*qcline, "units", "show", "U-cli", "--json"], env=env, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["frames"][0]["verdict"] == "FAIL"  # written before the process exited
