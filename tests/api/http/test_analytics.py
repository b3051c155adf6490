"""QC analytics over the API and on the page: the JSON behind the plots, roles, escaping."""

from __future__ import annotations

from api.services.auth import Role
from tests.api.conftest import Service, jpeg

XSS = "cam<script>alert(1)</script>"


def _line(service: Service) -> None:
    # ORD-1 is high-gloss (scratch critical): the tiny model sees a scratch on bright frames.
    for i, (value, camera) in enumerate([(255, "top"), (0, "top"), (0, "top"), (255, XSS)]):
        r = service.post_frame(jpeg(value, noise=i), unit_id=f"U-{i}", camera_id=camera,
                               captured_at=f"2026-11-26T{8 + i:02d}:00:00Z")
        assert r.status_code == 200, r.text
    assert service.ctx.writer.flush(timeout=10)


def test_analytics_json_has_every_figure(service: Service) -> None:
    _line(service)
    r = service.client.get("/v1/analytics", headers=service.auth(Role.ENGINEER), params={"bucket": "hour"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["frames"] == 4 and body["units"] == 4 and body["bucket"] == "hour"
    assert body["first_pass_yield"]["of"] == 3  # U-3 has no top view yet: no verdict, not judged
    cameras = {c["key"]: c for c in body["p_charts"] if c["dimension"] == "camera"}
    assert set(cameras) == {"top", XSS} and len(cameras["top"]["points"]) == 3
    window = service.client.get("/v1/analytics", headers=service.auth(Role.OPERATOR),
                                params={"since": "2026-11-26T09:00:00Z", "until": "2026-11-26T10:00:00Z"})
    assert window.json()["frames"] == 1


def test_analytics_roles_and_bad_windows(service: Service) -> None:
    assert service.client.get("/v1/analytics", headers=service.auth(Role.CAMERA)).status_code == 403
    assert service.client.get("/v1/analytics").status_code == 401
    r = service.client.get("/v1/analytics", headers=service.auth(Role.ENGINEER),
                           params={"since": "2026-11-27T00:00:00Z", "until": "2026-11-26T00:00:00Z"})
    assert r.status_code == 422 and "before" in r.json()["detail"]
    assert service.client.get("/v1/analytics", headers=service.auth(Role.ENGINEER),
                              params={"bucket": "month"}).status_code == 422


def test_analytics_page_is_server_rendered_and_escapes_client_text(service: Service) -> None:
    _line(service)
    r = service.client.get("/analytics", headers=service.auth(Role.OPERATOR))
    assert r.status_code == 200 and "QC analytics" in r.text
    assert "first-pass yield" in r.text and "<svg" in r.text  # matplotlib is installed here (train extra)
    assert "<script>alert(1)" not in r.text and "cam&lt;script&gt;" in r.text
    assert service.client.get("/analytics", headers=service.auth(Role.CAMERA),
                              follow_redirects=False).status_code == 303
