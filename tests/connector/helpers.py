"""What the connector tests share: the manifest's declared outputs, and a check that an output matches them."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

from connector.spec import load_manifest
from runner.engine.events import job_data
from webhooks.delivery import delivery_body

# The Python types a manifest type allows (a bool is not an integer or a number here).
PYTHON_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str, "integer": int, "number": (int, float), "boolean": bool, "object": dict, "array": list,
}
# Fixed identities of the job the unit tests talk about.
JOB_UUID = "6f1c2f0e-8a4b-4d7e-9c61-2b3a4d5e6f70"
PARENT_UUID = "0b7e2c1a-3d4f-4e5a-8b6c-7d8e9f0a1b2c"


def operation(kind: str, op_id: str) -> dict[str, Any]:
    """The shipped manifest's trigger or action with this id (``kind`` is "triggers" or "actions")."""
    matches = [item for item in load_manifest()[kind] if item["id"] == op_id]
    assert len(matches) == 1, f"the manifest declares {len(matches)} {kind} with id {op_id!r}"
    return matches[0]


def declared_output(kind: str, op_id: str) -> list[dict[str, Any]]:
    """The output fields the manifest declares for a trigger or action."""
    return operation(kind, op_id)["output"]


def is_of_type(value: Any, type_name: str) -> bool:
    """Whether a JSON value is of a manifest type."""
    if isinstance(value, bool) and type_name != "boolean":
        return False
    return isinstance(value, PYTHON_TYPES[type_name])


def assert_matches_declared(output: Any, fields: list[dict[str, Any]], where: str = "output") -> None:
    """Fail unless ``output`` has exactly the declared keys, each of its declared type (None only where nullable)."""
    assert isinstance(output, dict), f"{where} is {type(output).__name__}, not an object"
    declared = {f["name"]: f for f in fields}
    assert set(output) == set(declared), (
        f"{where}: undeclared keys {sorted(set(output) - set(declared))}, missing keys {sorted(set(declared) - set(output))}"
    )
    for name, field in declared.items():
        value = output[name]
        if value is None:
            assert field.get("nullable"), f"{where}.{name} is None but the manifest does not declare it nullable"
            continue
        assert is_of_type(value, field["type"]), f"{where}.{name} = {value!r} is not of declared type {field['type']}"
        if field.get("properties"):
            assert_matches_declared(value, field["properties"], f"{where}.{name}")


def event_payload(type_: str, *, parameters: dict[str, Any] | None = None, environment: str = "eu-qa",
                  stop: dict[str, Any] | None = None, parent: str | None = PARENT_UUID) -> dict[str, Any]:
    """The ``data`` of a runner event about job JOB_UUID, built with the runner's own ``job_data``."""
    job = SimpleNamespace(
        uuid=JOB_UUID, status="stopped" if stop else "queued", parent_job_uuid=parent, root_job_uuid=parent or JOB_UUID,
        depth=1 if parent else 0, triggered_by="runbook" if parent else "api", trigger_ref=None,
        runbook_key="RB-00007", runbook_name="restart-orders-db", runbook_version=3, environment=environment,
    )
    extra: dict[str, Any] = {}
    if parameters is not None:
        extra["parameters"] = parameters
    return {**job_data(job), **(stop or {})} | extra


def delivery(type_: str, secret: str, *, environment: str = "eu-qa", timestamp: int | None = None, msg_id: str = "msg_1",
             **payload: Any) -> dict[str, Any]:
    """A delivery exactly as the runner's sender builds it: the input of a trigger's ``receive``."""
    from webhooks.signing import signed_headers

    event = SimpleNamespace(type=type_, created_at=datetime.now(timezone.utc), id=1,
                            payload=event_payload(type_, environment=environment, **payload))
    body = delivery_body(event)
    headers = {**signed_headers(secret, msg_id, body, timestamp=timestamp), "Content-Type": "application/json",
               "X-Runbook-Environment": environment}
    return {"secret": secret, "headers": headers, "body": body}


def body_of(call: Any) -> dict[str, Any]:
    """The JSON body a scripted request was sent with."""
    return json.loads(call.request.body) if call.request.body else {}
