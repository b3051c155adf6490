"""Property-based fuzzing of every operation in the OpenAPI schema against a live server: whatever
schemathesis generates (valid and invalid bodies, odd strings, huge numbers), the answer is never a 5xx,
and every 4xx says why in JSON.

The schema is the app's own (built without starting it), so each operation is one parametrized test.
Runs are derandomized (the same examples every time, so CI is reproducible); ``QCLINE_FUZZ_RANDOM=1`` explores
new ones and ``QCLINE_FUZZ_EXAMPLES=N`` sets how many per operation (default 25).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from api.config import ServiceSettings
from api.http.app import create_app
from api.services.auth import Role
from tests.api.conftest import LiveService

pytestmark = pytest.mark.slow

SPEC: dict[str, Any] = create_app(ServiceSettings(data_dir=Path("unused"))).openapi()
SCHEMA = schemathesis.openapi.from_dict(SPEC)
# Revoking keys would fuzz away the fuzzer's own credentials; revocation is covered by the role tests.
OPERATIONS = [op.ok() for op in SCHEMA.get_all_operations()
              if not (op.ok().method.upper() == "DELETE" and op.ok().path == "/v1/keys/{key_id}")]


def _check(response: Any, case: Any) -> None:
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}\n"
        f"reproduce: {case.as_curl_command()}")
    if 400 <= response.status_code < 500 and response.status_code != 405:
        body = response.json()
        assert isinstance(body, dict) and body.get("detail"), f"{response.status_code} without a reason: {body}"


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
        _check(response, case)

    fuzz()
