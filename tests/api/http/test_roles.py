"""The whole role matrix: every route, every role (and no key), against the table below.

The table is the specification; a route added without a row fails ``test_every_route_is_in_the_table``, so
no endpoint can ship without its roles being decided and tested.
"""

from __future__ import annotations

import pytest

from api.services.auth import Role
from tests.api.conftest import Service

CAM, OP, ENG, ADM, MET = Role.CAMERA, Role.OPERATOR, Role.ENGINEER, Role.ADMIN, Role.METRICS
PUBLIC = "public"

MATRIX: dict[tuple[str, str], frozenset[Role] | str] = {
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/metrics"): frozenset({MET, ENG, ADM}),
    ("POST", "/v1/frames"): frozenset({CAM, ADM}),
    ("POST", "/v1/units/{unit_id}/close"): frozenset({CAM, OP, ADM}),
    ("GET", "/v1/units/{unit_id}"): frozenset({OP, ENG, ADM}),
    ("GET", "/v1/orders"): frozenset({OP, ENG, ADM}),
    ("POST", "/v1/orders"): frozenset({ENG, ADM}),
    ("POST", "/v1/orders/import"): frozenset({ENG, ADM}),
    ("GET", "/v1/orders/{order_id}"): frozenset({OP, ENG, ADM}),
    ("GET", "/v1/orders/{order_id}/units"): frozenset({OP, ENG, ADM}),
    ("GET", "/v1/profiles/{profile_hash}"): frozenset({OP, ENG, ADM}),
    ("GET", "/v1/reviews/queue"): frozenset({OP, ADM}),
    ("POST", "/v1/reviews"): frozenset({OP, ADM}),
    ("GET", "/v1/inspections/{inspection_id}/reviews"): frozenset({OP, ENG, ADM}),
    ("GET", "/v1/inspections/{inspection_id}/image"): frozenset({OP, ENG, ADM}),
    ("POST", "/v1/units/{unit_id}/disposition"): frozenset({OP, ADM}),
    ("GET", "/v1/station"): frozenset({OP, ENG, ADM}),
    ("GET", "/v1/analytics"): frozenset({OP, ENG, ADM}),
    ("GET", "/v1/models"): frozenset({ENG, ADM}),
    ("GET", "/v1/models/audit"): frozenset({ENG, ADM}),
    ("GET", "/v1/models/{model_id}"): frozenset({ENG, ADM}),
    ("POST", "/v1/models/{model_id}/promote"): frozenset({ENG, ADM}),
    ("POST", "/v1/models/rollback"): frozenset({ENG, ADM}),
    ("GET", "/v1/datasets"): frozenset({ENG, ADM}),
    ("GET", "/v1/datasets/{snapshot_id}"): frozenset({ENG, ADM}),
    ("POST", "/v1/training-jobs"): frozenset({ENG, ADM}),
    ("GET", "/v1/training-jobs"): frozenset({ENG, ADM}),
    ("GET", "/v1/training-jobs/{job_id}"): frozenset({ENG, ADM}),
    ("POST", "/v1/training-jobs/{job_id}/cancel"): frozenset({ENG, ADM}),
    ("GET", "/v1/keys"): frozenset({ADM}),
    ("POST", "/v1/keys"): frozenset({ADM}),
    ("DELETE", "/v1/keys/{key_id}"): frozenset({ADM}),
    ("POST", "/v1/triggers"): frozenset({CAM, ENG, ADM}),
    ("GET", "/v1/triggers"): frozenset({CAM, OP, ENG, ADM}),
    ("GET", "/v1/triggers/{trigger_id}"): frozenset({CAM, OP, ENG, ADM}),
    ("GET", "/v1/cameras"): frozenset({OP, ENG, ADM}),
    ("POST", "/v1/cameras"): frozenset({ENG, ADM}),
    ("DELETE", "/v1/cameras/{name}"): frozenset({ENG, ADM}),
}
PLACEHOLDERS = {"unit_id": "U-none", "order_id": "ORD-none", "profile_hash": "0" * 64, "inspection_id": "999999",
                "model_id": "999999", "snapshot_id": "nosuchsnapshot", "job_id": "999999", "key_id": "999999",
                "trigger_id": "T-none", "name": "no-camera"}


def _api_routes(service: Service) -> set[tuple[str, str]]:
    """Every operation of the OpenAPI schema (the review page's HTML routes are tested with the page)."""
    spec = service.client.get("/openapi.json", headers=service.auth(ADM)).json()
    return {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}


def test_every_route_is_in_the_table(service: Service) -> None:
    assert _api_routes(service) == set(MATRIX)


def _call(service: Service, method: str, path: str, role: Role | None) -> int:
    url = path.format(**PLACEHOLDERS)
    kwargs = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
    return service.client.request(method, url, headers=service.auth(role), **kwargs).status_code


@pytest.mark.parametrize(("method", "path"), sorted(MATRIX))
def test_route_admits_exactly_its_roles(service: Service, method: str, path: str) -> None:
    allowed = MATRIX[(method, path)]
    outcomes = {role: _call(service, method, path, role) for role in (None, *Role)}
    if allowed == PUBLIC:
        assert all(code not in (401, 403) for code in outcomes.values()), outcomes
        return
    assert isinstance(allowed, frozenset)
    assert outcomes[None] == 401, outcomes
    for role in Role:
        if role in allowed:
            assert outcomes[role] not in (401, 403), (role, outcomes)
            assert outcomes[role] < 500, (role, outcomes)
        else:
            assert outcomes[role] == 403, (role, outcomes)


@pytest.mark.parametrize("header", ["Bearer nope", "Bearer ", "Basic dXNlcjpwYXNz", "qck_raw-key-without-scheme"])
def test_bad_credentials_are_401_with_a_reason(service: Service, header: str) -> None:
    r = service.client.get("/v1/orders", headers={"Authorization": header})
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert r.json()["detail"]


def test_a_revoked_key_stops_working(service: Service) -> None:
    secret, record = service.ctx.keys.create(Role.OPERATOR, "temp")
    assert service.client.get("/v1/orders", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    r = service.client.delete(f"/v1/keys/{record.id}", headers=service.auth(Role.ADMIN))
    assert r.status_code == 200 and r.json()["revoked_at"]
    assert service.client.get("/v1/orders", headers={"Authorization": f"Bearer {secret}"}).status_code == 401


def test_admin_creates_keys_and_only_hashes_are_stored(service: Service) -> None:
    r = service.client.post("/v1/keys", json={"role": "camera", "name": "line-3 top"}, headers=service.auth(ADM))
    assert r.status_code == 201
    body = r.json()
    assert body["role"] == "camera" and body["key"].startswith("qck_")
    listed = service.client.get("/v1/keys", headers=service.auth(ADM)).json()
    assert body["key"] not in str(listed)
    from sqlalchemy import text

    with service.ctx.store.engine.connect() as conn:
        stored = [row[0] for row in conn.execute(text("SELECT key_hash FROM api_keys"))]
    assert body["key"] not in stored and all(len(h) == 64 for h in stored)
    r = service.client.post("/v1/frames", headers={"Authorization": f"Bearer {body['key']}"}, json={})
    assert r.status_code == 415  # authenticated as a camera; the body is what is wrong
