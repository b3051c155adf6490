"""The line station in the real service: QC_STATION_CONFIG set, a camera replaying a video file, HTTP triggers
through the app (TestClient, lifespan and all), the record of each, cameras added and removed, /metrics."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.composition import ServiceContext
from api.http.app import create_app
from api.services.auth import Role
from tests.api.conftest import Service, seed, service_settings
from tests.inspection.line.fakes import wait_until


def write_clip(path: Path, value: int = 255, frames: int = 50, fps: int = 25) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (64, 64))
    assert writer.isOpened()
    for i in range(frames):
        image = np.full((64, 64, 3), value, np.uint8)
        image[i % 60: i % 60 + 4, :] = 128  # every frame differs
        writer.write(image)
    writer.release()
    return path


@pytest.fixture
def line_service(tmp_path: Path, tiny_model: Path) -> Iterator[Service]:
    clip = write_clip(tmp_path / "top.avi")
    station = tmp_path / "station.yaml"
    station.write_text(f"""station: test-line
budgets: {{frame_wait_ms: 3000, answer_within_ms: 20000}}
cameras:
  - {{name: top, url: "{clip}", max_fps: 25}}
triggers:
  - {{kind: http}}
""")
    ctx = ServiceContext.open(service_settings(tmp_path / "data", tiny_model, station_config=station))
    keys = seed(ctx)
    with TestClient(create_app(context=ctx)) as client:
        assert ctx.wait_ready(30), ctx.load_error
        yield Service(client, ctx, keys)


def test_http_trigger_is_judged_answered_and_recorded(line_service: Service) -> None:
    s = line_service
    assert s.ctx.line is not None
    wait_until(lambda: s.ctx.line.hub.stats()[0].frames_in > 0, "frames from the replayed camera")  # type: ignore[union-attr]
    response = s.client.post("/v1/triggers", json={"unit_id": "U-L1", "order_id": "ORD-1"}, headers=s.auth(Role.CAMERA))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "answered" and body["outcome"] == "judged" and body["verdict"] == "FAIL"
    again = s.client.get(f"/v1/triggers/{body['trigger_id']}", headers=s.auth(Role.OPERATOR)).json()
    assert again["outcome"] == "judged" and again["frames"]["top"]["camera"] == "top"
    listed = s.client.get("/v1/triggers?limit=5", headers=s.auth(Role.ENGINEER)).json()
    assert [t["trigger_id"] for t in listed] == [body["trigger_id"]]
    unit = s.client.get("/v1/units/U-L1", headers=s.auth(Role.OPERATOR)).json()
    assert unit["verdict"] == "FAIL"
    assert [f["frame_sha256"] for f in unit["frames"]] == [again["frames"]["top"]["frame_sha256"]]


def test_roles_cameras_and_metrics(line_service: Service) -> None:
    s = line_service
    assert s.client.post("/v1/triggers", json={"unit_id": "U-1"}, headers=s.auth(Role.OPERATOR)).status_code == 403
    assert s.client.post("/v1/triggers", json={"unit_id": "U-1"}).status_code == 401
    cameras = s.client.get("/v1/cameras", headers=s.auth(Role.ENGINEER)).json()
    assert [c["name"] for c in cameras] == ["top"]
    spec = {"name": "side", "url": "rtsp://127.0.0.1:9/nothing", "reconnect": {"min_s": 0.1, "max_s": 0.5}}
    assert s.client.post("/v1/cameras", json=spec, headers=s.auth(Role.CAMERA)).status_code == 403
    added = s.client.post("/v1/cameras", json=spec, headers=s.auth(Role.ENGINEER))
    assert added.status_code == 201, added.text
    assert s.client.post("/v1/cameras", json=spec, headers=s.auth(Role.ENGINEER)).status_code == 409
    # a trigger for a two-view order: side never delivers, so the unit cannot pass and says why
    answer = s.client.post("/v1/triggers", json={"unit_id": "U-2V", "order_id": "ORD-2"},
                           headers=s.auth(Role.CAMERA)).json()
    assert answer["outcome"] == "missing_views" and answer["verdict"] != "PASS"
    assert "camera side" in answer["error"]
    metrics = s.client.get("/metrics", headers=s.auth(Role.ENGINEER)).text
    assert 'qcline_camera_frames_in{camera="top"}' in metrics
    assert 'qcline_line_triggers_total{channel="http",outcome="missing_views"} 1.0' in metrics
    assert s.client.delete("/v1/cameras/side", headers=s.auth(Role.ENGINEER)).status_code == 204
    assert s.client.delete("/v1/cameras/side", headers=s.auth(Role.ENGINEER)).status_code == 404
    bad = s.client.post("/v1/cameras", json={"name": "x y", "url": "ftp://a"}, headers=s.auth(Role.ENGINEER))
    assert bad.status_code == 422


def test_no_station_configured_is_a_clear_404(service: Service) -> None:
    response = service.client.post("/v1/triggers", json={"unit_id": "U-1"}, headers=service.auth(Role.CAMERA))
    assert response.status_code == 404 and "QC_STATION_CONFIG" in response.json()["detail"]


def test_station_page_shows_cameras_and_triggers_escaped(line_service: Service) -> None:
    s = line_service
    hostile = "<script>alert(1)</script>"
    answer = s.client.post("/v1/triggers", json={"unit_id": hostile, "order_id": "ORD-1"}, headers=s.auth(Role.CAMERA))
    assert answer.status_code == 200, answer.text
    assert s.client.get("/station", follow_redirects=False).status_code == 303  # not signed in: to the sign-in
    assert s.client.get("/station", headers=s.auth(Role.CAMERA), follow_redirects=False).status_code == 303
    page = s.client.get("/station", headers=s.auth(Role.OPERATOR))
    assert page.status_code == 200
    assert 'data-camera="top"' in page.text and "Station test-line" in page.text
    assert hostile not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert f'data-trigger="{answer.json()["trigger_id"]}"' in page.text


def test_http_trigger_retry_with_its_id_is_not_judged_twice(line_service: Service) -> None:
    s = line_service
    body = {"unit_id": "U-retry", "order_id": "ORD-1", "trigger_id": "mes-4711"}
    first = s.client.post("/v1/triggers", json=body, headers=s.auth(Role.CAMERA))
    again = s.client.post("/v1/triggers", json=body, headers=s.auth(Role.CAMERA))
    assert first.status_code == again.status_code == 200
    assert again.json()["outcome"] == first.json()["outcome"] == "judged"
    assert len(s.client.get("/v1/units/U-retry", headers=s.auth(Role.OPERATOR)).json()["frames"]) == 1
    late = s.client.post("/v1/triggers", json={"unit_id": "U-x", "at": "yesterday"}, headers=s.auth(Role.CAMERA))
    assert late.status_code == 422 and "ISO 8601" in late.json()["detail"]


def test_answer_later_than_the_budget_is_202_then_read_back(tmp_path: Path, tiny_model: Path) -> None:
    station = tmp_path / "station.yaml"
    station.write_text("station: slow-line\nbudgets: {frame_wait_ms: 1500, answer_within_ms: 100}\ncameras:\n"
                       "  - {name: top, url: 'rtsp://127.0.0.1:9/none', reconnect: {min_s: 0.1, max_s: 0.5}}\n")
    ctx = ServiceContext.open(service_settings(tmp_path / "data", tiny_model, station_config=station))
    keys = seed(ctx)
    with TestClient(create_app(context=ctx)) as client:
        assert ctx.wait_ready(30), ctx.load_error
        s = Service(client, ctx, keys)
        response = client.post("/v1/triggers", json={"unit_id": "U-slow", "order_id": "ORD-1"},
                               headers=s.auth(Role.CAMERA))
        assert response.status_code == 202, response.text
        pending = response.json()
        assert pending["status"] == "pending" and pending["outcome"] is None
        url = f"/v1/triggers/{pending['trigger_id']}"
        wait_until(lambda: client.get(url, headers=s.auth(Role.CAMERA)).json()["status"] == "answered",
                   "the answer recorded")
        answered = client.get(url, headers=s.auth(Role.CAMERA)).json()
        assert answered["outcome"] == "missing_views" and answered["verdict"] == "REVIEW"
        assert answered["error"].startswith("camera top: ")
