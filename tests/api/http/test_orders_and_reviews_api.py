"""Orders and profiles over HTTP; operators' decisions through the same review service as the CLI."""

from __future__ import annotations

import pytest

from api.services.auth import Role
from tests.api.conftest import Service, jpeg

ENG, OP = Role.ENGINEER, Role.OPERATOR


def test_orders_list_read_and_units(service: Service) -> None:
    orders = service.client.get("/v1/orders", headers=service.auth(OP)).json()
    assert [o["id"] for o in orders] == ["ORD-1", "ORD-2", "ORD-X"]
    one = service.client.get("/v1/orders/ORD-1", headers=service.auth(OP)).json()
    assert one["profile"] == "high-gloss" and one["profile_spec"]["classes"]["scratch"]["critical"] is True
    profile = service.client.get(f"/v1/profiles/{one['profile_hash']}", headers=service.auth(OP)).json()
    assert profile["name"] == "high-gloss"
    service.post_frame(jpeg(255), unit_id="U-o1")
    service.ctx.writer.flush(5)
    units = service.client.get("/v1/orders/ORD-1/units", headers=service.auth(OP)).json()
    assert [u["unit_id"] for u in units] == ["U-o1"]
    assert service.client.get("/v1/orders/NOPE", headers=service.auth(OP)).status_code == 404


def test_create_an_order_with_an_inline_profile_then_by_profile_name(service: Service) -> None:
    profile = {"name": "raw-steel", "default": {"ignore": True}, "classes": {"dent": {"confidence": 0.5}},
               "required_views": ["top"]}
    r = service.client.post("/v1/orders", headers=service.auth(ENG), json={
        "id": "ORD-9", "customer_ref": "Lind", "product": "Shelf", "due_date": "2026-12-24", "profile": profile})
    assert r.status_code == 201, r.text
    assert r.json()["created"] == 1 and r.json()["profiles_added"] == 1
    r = service.client.post("/v1/orders", headers=service.auth(ENG), json={"id": "ORD-10", "profile": "raw-steel"})
    assert r.status_code == 201 and r.json()["profiles_added"] == 0
    assert service.post_frame(jpeg(255), unit_id="U-9", order_id="ORD-10").json()["verdict"] == "FAIL"


def test_a_changed_profile_applies_to_the_next_units(service: Service) -> None:
    assert service.post_frame(jpeg(255), unit_id="U-p1", order_id="ORD-2").json()["verdict"] == "PASS"
    strict = {"name": "rustic-oak", "default": {"confidence": 0.3}, "required_views": ["top", "side"]}
    r = service.client.post("/v1/orders", headers=service.auth(ENG), json={"id": "ORD-2", "profile": strict})
    assert r.status_code == 201 and r.json()["updated"] == 1
    assert service.post_frame(jpeg(255), unit_id="U-p2", order_id="ORD-2").json()["verdict"] == "FAIL"


def test_import_an_order_book_as_yaml_and_json(service: Service) -> None:
    yaml_book = """
profiles:
  matte: {name: matte, default: {confidence: 0.5}, required_views: [top]}
orders:
  - {id: ORD-Y1, profile: matte, due_date: 2026-12-10}
  - {id: ORD-Y2, profile: matte}
"""
    r = service.client.post("/v1/orders/import", headers={**service.auth(ENG), "Content-Type": "application/yaml"},
                            content=yaml_book.encode())
    assert r.status_code == 200, r.text
    assert r.json()["created"] == 2
    again = service.client.post("/v1/orders/import", headers={**service.auth(ENG), "Content-Type": "application/yaml"},
                                content=yaml_book.encode())
    assert again.json()["unchanged"] == 2


BAD_BOOKS = [
    pytest.param(b"profiles: [", "application/yaml", 422, "does not parse", id="yaml-syntax"),
    pytest.param(b"{\"orders\": ", "application/json", 422, "does not parse", id="json-syntax"),
    pytest.param(b"[1, 2]", "application/json", 422, "mapping", id="not-a-mapping"),
    pytest.param(b"profiles: {p: ../../etc/profile.yaml}\norders: []", "application/yaml", 422, "inline",
                 id="profile-path"),
    pytest.param(b"orders: [{id: A, profile: ghost}]", "application/yaml", 404, "no profile named",
                 id="unknown-profile"),
    pytest.param(b"orders: [{id: A, profile: {name: p, default: {confidence: 7}}}]", "application/yaml", 422,
                 "confidence", id="invalid-rule"),
    pytest.param(b"orders: [{id: A, profile: high-gloss}, {id: A, profile: high-gloss}]", "application/yaml", 422,
                 "twice", id="duplicate-id"),
    pytest.param(b"orders: []", "text/csv", 415, "application/json", id="wrong-type"),
    pytest.param(b"\xff\xfe\x00garbage", "application/yaml", 422, "parse", id="not-utf8"),
]


@pytest.mark.parametrize(("body", "media", "status", "reason"), BAD_BOOKS)
def test_bad_order_books_are_refused_and_nothing_changes(service: Service, body: bytes, media: str, status: int,
                                                        reason: str) -> None:
    r = service.client.post("/v1/orders/import", headers={**service.auth(ENG), "Content-Type": media}, content=body)
    assert r.status_code == status, r.text
    assert reason.lower() in r.json()["detail"].lower()
    ids = [o["id"] for o in service.client.get("/v1/orders", headers=service.auth(OP)).json()]
    assert ids == ["ORD-1", "ORD-2", "ORD-X"]


def test_malformed_json_is_422_with_the_field(service: Service) -> None:
    r = service.client.post("/v1/orders", headers={**service.auth(ENG), "Content-Type": "application/json"},
                            content=b"{not json")
    assert r.status_code == 422
    r = service.client.post("/v1/orders", headers=service.auth(ENG), json={"id": "", "profile": "high-gloss"})
    assert r.status_code == 422 and "id" in r.json()["detail"]


def _flagged_inspection(service: Service, unit_id: str) -> int:
    service.post_frame(jpeg(255, noise=len(unit_id)), unit_id=unit_id)
    record = service.client.get(f"/v1/units/{unit_id}", headers=service.auth(OP)).json()
    return int(record["frames"][0]["id"])


def test_operator_reviews_a_unit_end_to_end(service: Service) -> None:
    inspection = _flagged_inspection(service, "U-r1")
    queue = service.client.get("/v1/reviews/queue", headers=service.auth(OP)).json()
    assert [q["unit_id"] for q in queue] == ["U-r1"]
    image = service.client.get(f"/v1/inspections/{inspection}/image", headers=service.auth(OP))
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    decision = {"inspection_id": inspection, "decision": "correct", "boxes": [["scratch", 10, 10, 40, 30]]}
    first = service.client.post("/v1/reviews", headers=service.auth(OP), json=decision)
    double_click = service.client.post("/v1/reviews", headers=service.auth(OP), json=decision)
    assert first.status_code == double_click.status_code == 201
    assert first.json()["actor"] == "operator-tester" and double_click.json()["duplicate"] is True
    history = service.client.get(f"/v1/inspections/{inspection}/reviews", headers=service.auth(OP)).json()
    assert len(history) == 1 and history[0]["boxes"] == [["scratch", 10.0, 10.0, 40.0, 30.0]]
    r = service.client.post("/v1/units/U-r1/disposition", headers=service.auth(OP), json={"disposition": "rework"})
    assert r.status_code == 201
    assert service.client.get("/v1/reviews/queue", headers=service.auth(OP)).json() == []
    record = service.client.get("/v1/units/U-r1", headers=service.auth(Role.ENGINEER)).json()
    assert record["dispositions"][0]["disposition"] == "rework"
    assert record["frames"][0]["reviews"][0]["decision"] == "correct"
    assert record["frames"][0]["model_sha256"] and record["frames"][0]["profile_hash"]
    assert record["profile"]["spec"]["name"] == "high-gloss"


BAD_REVIEWS = [
    pytest.param({"inspection_id": None, "decision": "confirm"}, 422, "inspection_id", id="missing-id"),
    pytest.param({"inspection_id": 1, "decision": "maybe"}, 422, "decision", id="unknown-decision"),
    pytest.param({"inspection_id": 999999, "decision": "confirm"}, 404, "not recorded", id="unknown-inspection"),
    pytest.param({"inspection_id": 0, "decision": "confirm"}, 422, "inspection_id", id="zero-id"),
    pytest.param({"decision": "correct", "boxes": []}, 422, "at least one box", id="correct-without-boxes"),
    pytest.param({"decision": "confirm", "boxes": [["scratch", 1, 1, 5, 5]]}, 422, "takes no boxes",
                 id="confirm-with-boxes"),
    pytest.param({"decision": "correct", "boxes": [["scratch", 10, 10, 5, 5]]}, 422, "x2 > x1", id="inverted-box"),
    pytest.param({"decision": "correct", "boxes": [["scratch", 1, 1, 500, 5]]}, 422, "outside", id="box-outside"),
    pytest.param({"decision": "correct", "boxes": [["<img src=x>", 1, 1, 5, 5]]}, 422, "class name",
                 id="markup-class-name"),
    pytest.param({"decision": "correct", "boxes": [["scratch", 1, 1]]}, 422, "boxes", id="short-box"),
]


@pytest.mark.parametrize(("extra", "status", "reason"), BAD_REVIEWS)
def test_bad_reviews_are_refused_with_a_reason(service: Service, extra: dict[str, object], status: int,
                                               reason: str) -> None:
    inspection = _flagged_inspection(service, "U-bad-review")
    body = {k: v for k, v in {"inspection_id": inspection, **extra}.items() if v is not None}
    r = service.client.post("/v1/reviews", headers=service.auth(OP), json=body)
    assert r.status_code == status, r.text
    assert reason.lower() in r.text.lower()
    assert service.client.get(f"/v1/inspections/{inspection}/reviews", headers=service.auth(OP)).json() == []


def test_bad_dispositions(service: Service) -> None:
    _flagged_inspection(service, "U-d1")
    r = service.client.post("/v1/units/U-d1/disposition", headers=service.auth(OP), json={"disposition": "burn"})
    assert r.status_code == 422
    r = service.client.post("/v1/units/U-none/disposition", headers=service.auth(OP), json={"disposition": "scrap"})
    assert r.status_code == 404
