"""The order's inspection certificate on the web: roles, content, escaping, the link from the unit page."""

from __future__ import annotations

from api.services.auth import Role
from tests.api.conftest import Service, jpeg


def test_certificate_lists_the_orders_units_with_their_chain_link(service: Service) -> None:
    for camera in ("top", "side"):
        assert service.post_frame(jpeg(255 if camera == "top" else 0), unit_id="U-7", camera_id=camera).status_code \
            == 200
    r = service.client.get("/review/certificates/ORD-1", headers=service.auth(Role.ENGINEER))
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    assert "Inspection certificate" in r.text and "U-7" in r.text
    assert "chain intact" in r.text and "Chain link: #" in r.text
    assert "<script" not in r.text  # a document, not a page: nothing runs in it
    unit = service.client.get("/review/units/U-7", headers=service.auth(Role.OPERATOR))
    assert 'href="/review/certificates/ORD-1"' in unit.text


def test_certificate_needs_an_operator_or_engineer(service: Service) -> None:
    for role in (None, Role.CAMERA):
        r = service.client.get("/review/certificates/ORD-1", headers=service.auth(role), follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/review/login"
    assert service.client.get("/review/certificates/ORD-1", headers=service.auth(Role.OPERATOR)).status_code == 200


def test_certificate_of_an_unknown_order_is_404_and_escaped(service: Service) -> None:
    r = service.client.get("/review/certificates/<b>NOPE", headers=service.auth(Role.OPERATOR))
    assert r.status_code == 404 and "<b>NOPE" not in r.text and "&lt;b&gt;NOPE" in r.text
