"""The OpenAPI schema describes every answer: each JSON route names its response model, each error its body.

A route added without ``response_model`` gets FastAPI's schema of its return annotation (``{}`` or "any object"),
which schemathesis can check nothing against; this fails for it by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from api.config import ServiceSettings
from api.http.app import create_app

SPEC: dict[str, Any] = create_app(ServiceSettings(data_dir=Path("unused"))).openapi()
OPERATIONS = [(method.upper(), path, op) for path, item in SPEC["paths"].items() for method, op in item.items()]
ERROR_REF = "#/components/schemas/ErrorOut"


def _named(schema: dict[str, Any]) -> bool:
    """A schema that says something: a component, or an array of one."""
    if "$ref" in schema:
        return True
    return schema.get("type") == "array" and "$ref" in schema.get("items", {})


@pytest.mark.parametrize(("method", "path", "operation"), OPERATIONS, ids=[f"{m} {p}" for m, p, _ in OPERATIONS])
def test_every_answer_is_described(method: str, path: str, operation: dict[str, Any]) -> None:
    responses = operation["responses"]
    success = [code for code in responses if code.startswith("2")]
    assert success, f"{method} {path} documents no success answer"
    for code in success:
        if code == "204":  # No Content: nothing to describe
            assert not responses[code].get("content"), f"{method} {path} 204 describes a body"
            continue
        content = responses[code].get("content", {})
        assert content, f"{method} {path} {code} has no content described"
        for media_type, body in content.items():
            if media_type == "application/json":
                assert _named(body.get("schema", {})), f"{method} {path} {code}: no response_model ({body})"
            else:
                assert body.get("schema"), f"{method} {path} {code} {media_type}: no schema"
    errors = [code for code in responses if code[0] in "45"]
    takes_input = bool(operation.get("parameters") or operation.get("requestBody"))
    needed = {"401", "403"} | ({"422"} if takes_input else set())
    assert needed <= set(errors) or path in ("/healthz", "/readyz"), f"{method} {path} documents only {errors}"
    for code in errors:
        schema = responses[code]["content"]["application/json"]["schema"]
        assert schema.get("$ref") in (ERROR_REF, "#/components/schemas/ReadyOut"), f"{method} {path} {code}: {schema}"


def test_the_error_body_is_the_one_errors_send() -> None:
    from api.http.errors import error_body
    from api.http.schemas import ErrorOut

    assert ErrorOut.model_validate(error_body("no such unit", "NotFoundError")).detail == "no such unit"
    assert ErrorOut.model_validate(error_body("bad", "RequestValidationError", problems=["id: too long"])).problems
    assert set(SPEC["components"]["schemas"]["ErrorOut"]["required"]) == {"detail", "error"}
