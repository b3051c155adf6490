"""The line signals wired into both front doors: the HTTP service and the CLI station."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.composition import ServiceContext
from api.http.app import create_app
from api.services.auth import Role
from drills.plc import ModbusMemory, ModbusServer, Taken, take_result
from inspection.settings import REPO_ROOT
from tests.api.conftest import jpeg, seed, service_settings
from tests.builders import Candidate, solid_image, tiny_package, write_image
from tests.inspection.signals.conftest import Subscriber
from tests.inspection.signals.schemas import validate


def test_the_service_publishes_verdicts_and_drives_the_plc(tmp_path: Path, broker: tuple[str, int], prefix: str,
                                                           subscriber: Subscriber) -> None:
    model = tiny_package(tmp_path / "tiny-model", [Candidate(32, 32, 16, 16, 0, 0.9)], classes=("scratch", "dent"))
    with ModbusServer() as plc_server:
        ctx = ServiceContext.open(service_settings(
            tmp_path / "data", model, station_id="svc-1", mqtt_url=f"mqtt://{broker[0]}:{broker[1]}",
            mqtt_topic_prefix=prefix, modbus_host="127.0.0.1", modbus_port=plc_server.port))
        keys = seed(ctx)
        plc = ModbusMemory(plc_server.port)
        with TestClient(create_app(context=ctx)) as client:
            assert ctx.wait_ready(30), ctx.load_error
            answer = client.post("/v1/frames", headers={"Authorization": f"Bearer {keys[Role.CAMERA]}"},
                                 data={"unit_id": "U-1", "order_id": "ORD-1", "camera_id": "top"},
                                 files={"image": ("frame.jpg", jpeg(255), "image/jpeg")})
            assert answer.status_code == 200, answer.text
            got = dict(subscriber.take(2))  # the FAIL frame event and the unit verdict
            assert take_result(plc) == Taken(2, 1, "U-1")
            metrics = client.get("/metrics", headers={"Authorization": f"Bearer {keys[Role.METRICS]}"}).text
        assert plc.read("ready") == 0  # the service's shutdown closed the PLC output
    unit = got[f"{prefix}/svc-1/units/U-1/verdict"]
    validate("unit-verdict", unit)
    assert unit["verdict"] == "FAIL" and unit["order_id"] == "ORD-1" and unit["station_id"] == "svc-1"
    validate("frame-event", got[f"{prefix}/svc-1/units/U-1/frames/top"])
    assert "qcline_mqtt_spool_messages" in metrics and "qcline_plc_pending" in metrics


@pytest.mark.slow
def test_the_cli_station_publishes_its_verdicts(tmp_path: Path, broker: tuple[str, int], prefix: str,
                                                subscriber: Subscriber) -> None:
    model = tiny_package(tmp_path / "pkg", [Candidate(32, 32, 16, 16, 0, 0.9)], classes=("scratch", "dent"))
    write_image(tmp_path / "white.png", solid_image(255, 128, 96))
    (tmp_path / "orders.yaml").write_text(
        "profiles:\n  gloss: {name: gloss, classes: {scratch: {confidence: 0.5, critical: true}}, "
        "required_views: [top]}\norders:\n  - {id: O-1, customer_ref: Berg, product: door, profile: gloss}\n")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "QC_DATA_DIR": str(tmp_path / "data"),
           "QC_MODEL_PATH": str(model), "QC_MQTT_URL": f"mqtt://{broker[0]}:{broker[1]}",
           "QC_MQTT_TOPIC_PREFIX": prefix, "QC_STATION_ID": "cli-1"}
    for args in (["orders", "import", str(tmp_path / "orders.yaml")],
                 ["inspect", "--source", str(tmp_path / "white.png"), "--unit", "D/9", "--order", "O-1",
                  "--camera", "top"]):
        done = subprocess.run([sys.executable, "-m", "api.cli", *args], capture_output=True, text=True, env=env,
                              timeout=300, check=False)
        assert done.returncode in (0,), (done.stdout, done.stderr)
    got = dict(subscriber.take(2))
    unit = got[f"{prefix}/cli-1/units/D%2F9/verdict"]
    validate("unit-verdict", unit)
    assert unit["unit_id"] == "D/9" and unit["verdict"] == "FAIL"
