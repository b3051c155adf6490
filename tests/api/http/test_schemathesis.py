"""The OpenAPI schema against a live server, checked both ways.

``test_no_input_makes_a_server_error``: property-based fuzzing of every operation in the schema, with an admin
key (admins may call every route): whatever schemathesis generates (valid and invalid bodies, odd strings, huge
numbers), the answer is never a 5xx, every 4xx says why in JSON, and every answer is one the schema describes
(status code documented, content type documented, body valid against the response schema, required headers
present), and what the schema calls invalid is refused.

``test_real_answers_match_the_schema``: the fuzzer rarely hits an id that exists, so each read route is also
called once on a seeded store (an order, a judged unit with a review and a disposition, a registered model) and
its answer checked the same way: the schema describes the answers the API actually gives, not only its errors.

The schema is the app's own (built without starting it), so each operation is one parametrized test.
Runs are derandomized (the same examples every time, so CI is reproducible); ``QCLINE_FUZZ_RANDOM=1`` explores
new ones and ``QCLINE_FUZZ_EXAMPLES=N`` sets how many per operation (default 25).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.config import ServiceSettings
from api.http.app import create_app
from api.services.auth import Role
from tests.api.conftest import LiveService, jpeg

pytestmark = pytest.mark.slow

SPEC: dict[str, Any] = create_app(ServiceSettings(data_dir=Path("unused"))).openapi()
SCHEMA = schemathesis.openapi.from_dict(SPEC)
# Revoking keys would fuzz away the fuzzer's own credentials; revocation is covered by the role tests.
OPERATIONS = [op.ok() for op in SCHEMA.get_all_operations()
              if not (op.ok().method.upper() == "DELETE" and op.ok().path == "/v1/keys/{key_id}")]
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance, negative_data_rejection]
# Not ``positive_data_acceptance``: a schema-valid request may still be refused (422, with its reason) by rules
# the schema cannot state: look-alike identifiers, a box outside its frame, a camera without label settings.


def _says_why(response: Any, case: Any) -> None:
    if 400 <= response.status_code < 500 and response.status_code != 405:
        body = response.json()
        assert isinstance(body, dict) and body.get("detail"), (
            f"{case.method} {case.formatted_path} -> {response.status_code} without a reason: {body}")


@pytest.mark.parametrize("operation", OPERATIONS, ids=[f"{op.method.upper()} {op.path}" for op in OPERATIONS])
def test_no_input_makes_a_server_error(operation: Any, live_service: LiveService) -> None:
    auth = {"Authorization": f"Bearer {live_service.keys[Role.ADMIN]}"}

    @given(case=operation.as_strategy())
    @settings(max_examples=int(os.environ.get("QCLINE_FUZZ_EXAMPLES", "25")), deadline=None, database=None,
              derandomize=os.environ.get("QCLINE_FUZZ_RANDOM") != "1",
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                     HealthCheck.data_too_large])
    def fuzz(case: Any) -> None:
        response = case.call(base_url=live_service.url, headers={**(case.headers or {}), **auth})
        case.validate_response(response, checks=CHECKS)
        _says_why(response, case)

    fuzz()


def _operation(method: str, path: str) -> Any:
    return SCHEMA[path][method.upper()]


def test_real_answers_match_the_schema(live_service: LiveService) -> None:
    """Every read route answers a seeded store (and the write routes that made it) as the schema says."""
    ctx, admin = live_service.ctx, {"Authorization": f"Bearer {live_service.keys[Role.ADMIN]}"}
    model = ctx.registry.list()[0]  # the service registered the model it runs
    with httpx.Client(base_url=live_service.url, headers=admin, timeout=30) as client:
        judged = client.post("/v1/frames", data={"unit_id": "U-1", "order_id": "ORD-1", "camera_id": "top"},
                             files={"image": ("frame.jpg", jpeg(), "image/jpeg")})
        assert judged.status_code == 200, judged.text
        inspection_id = ctx.store.unit_record("U-1").frames[0].id
        profile_hash = ctx.store.get_order("ORD-1")[1].content_hash
    answered: list[tuple[str, str, int]] = []

    def check(method: str, path: str, status: int = 200, *, path_parameters: dict[str, Any] | None = None,
              query: dict[str, Any] | None = None, body: Any = None) -> None:
        kwargs: dict[str, Any] = {"path_parameters": path_parameters or {}, "query": query or {}}
        if body is not None:
            kwargs |= {"body": body, "media_type": "application/json"}
        case = _operation(method, path).Case(**kwargs)
        response = case.call(base_url=live_service.url, headers=admin)
        assert response.status_code == status, f"{method} {path}: {response.status_code} {response.text[:300]}"
        case.validate_response(response, checks=CHECKS)
        answered.append((method, path, response.status_code))

    check("GET", "/healthz")
    check("GET", "/readyz")
    check("GET", "/v1/station")
    check("GET", "/v1/orders")
    check("GET", "/v1/orders/{order_id}", path_parameters={"order_id": "ORD-1"})
    check("GET", "/v1/orders/{order_id}/units", path_parameters={"order_id": "ORD-1"})
    check("GET", "/v1/profiles/{profile_hash}", path_parameters={"profile_hash": profile_hash})
    check("POST", "/v1/reviews", 201, body={"inspection_id": inspection_id, "decision": "confirm"})
    check("GET", "/v1/reviews/queue")
    check("GET", "/v1/inspections/{inspection_id}/reviews", path_parameters={"inspection_id": inspection_id})
    check("GET", "/v1/inspections/{inspection_id}/image", path_parameters={"inspection_id": inspection_id})
    check("POST", "/v1/units/{unit_id}/disposition", 201, path_parameters={"unit_id": "U-1"},
          body={"disposition": "rework", "note": "re-lacquer"})
    check("GET", "/v1/units/{unit_id}", path_parameters={"unit_id": "U-1"})
    check("POST", "/v1/units/{unit_id}/close", path_parameters={"unit_id": "U-1"})
    check("GET", "/v1/analytics")
    check("GET", "/v1/models")
    check("GET", "/v1/models/{model_id}", path_parameters={"model_id": str(model.id)})
    check("GET", "/v1/models/audit")
    check("GET", "/v1/datasets")
    check("GET", "/v1/training-jobs")
    check("GET", "/v1/keys")
    check("POST", "/v1/keys", 201, body={"role": "camera", "name": "schema-check"})
    check("GET", "/metrics")
    assert len(answered) == 23
