"""The OpenAPI document an iPaaS imports to build a custom connector: valid, unambiguous, and describing invocation fully."""
from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from openapi_spec_validator import validate

INVOKE_PATH = "/api/v1/ws/{ws}/runbooks/{key}/jobs"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


@pytest.fixture
def spec(client) -> dict[str, Any]:
    answer = client.get("/openapi.json")
    assert answer.status_code == 200
    return answer.get_json()


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, item in spec["paths"].items() for method, op in item.items() if method in METHODS]


def test_openapi_document_is_valid(spec: dict[str, Any]) -> None:
    validate(spec)
    assert INVOKE_PATH in spec["paths"]


def test_every_operation_has_an_operation_id(spec: dict[str, Any]) -> None:
    missing = [f"{method.upper()} {path}" for path, method, op in _operations(spec) if not op.get("operationId")]
    assert not missing, f"operations without an operationId: {missing}"


def test_operation_ids_are_unique(spec: dict[str, Any]) -> None:
    counts = Counter(op.get("operationId") for _, _, op in _operations(spec) if op.get("operationId"))
    assert not [i for i, n in counts.items() if n > 1], f"operationIds used more than once: {[i for i, n in counts.items() if n > 1]}"


def test_invoke_documents_the_idempotency_key_header(spec: dict[str, Any]) -> None:
    invoke = spec["paths"][INVOKE_PATH]["post"]
    headers = [p for p in invoke.get("parameters", []) + spec["paths"][INVOKE_PATH].get("parameters", []) if p.get("in") == "header"]
    assert [h["name"] for h in headers if h["name"].lower() == "idempotency-key"] == ["Idempotency-Key"], headers


@pytest.mark.parametrize("status", ["202", "200"])
def test_invoke_documents_both_its_answers(spec: dict[str, Any], status: str) -> None:
    response = spec["paths"][INVOKE_PATH]["post"]["responses"].get(status)
    assert response is not None, f"POST {INVOKE_PATH} does not document {status}"
    schema = response["content"]["application/json"]["schema"]
    name = schema["$ref"].rsplit("/", 1)[-1]
    assert "job" in spec["components"]["schemas"][name]["properties"]
