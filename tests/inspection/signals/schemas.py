"""The payload JSON Schemas shipped in ``docs/schemas/``, as validators (format checks on)."""

from __future__ import annotations

import json
from functools import cache

from jsonschema import Draft202012Validator

from inspection.settings import REPO_ROOT

SCHEMA_DIR = REPO_ROOT / "docs" / "schemas"


@cache
def validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def validate(name: str, payload: object) -> None:
    validator(name).validate(payload)
