from __future__ import annotations

from api.services.auth import Role
from tests.api.conftest import Service, jpeg


def test_bright_frame_fails_on_a_gloss_order(service: Service) -> None:
    r = service.post_frame(jpeg(255))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["verdict"] == "FAIL"
    assert {d["class"] for d in body["detections"]} == {"scratch", "dent"}
    assert body["unit_verdict"]["verdict"] == "FAIL"
    r = service.client.get("/v1/units/U-1", headers=service.auth(Role.OPERATOR))
    assert r.status_code == 200, r.text
    assert r.json()["frames"][0]["verdict"] == "FAIL"
