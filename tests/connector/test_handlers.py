"""Each handler against a scripted runner: outputs shaped as the manifest declares, deliveries verified, subscriptions set up."""
from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

import connector
from connector import ConfigurationError, VerificationFailed
from tests.connector.conftest import SCRIPTED_FIELDS, SCRIPTED_URL
from tests.connector.helpers import (
    JOB_UUID,
    PARENT_UUID,
    assert_matches_declared,
    body_of,
    declared_output,
    delivery,
    event_payload,
)
from webhooks.signing import generate_secret

WS = f"{SCRIPTED_URL}/api/v1/ws/acme"
SECRET = generate_secret()
INVOKED = "runbook.invoked"
STOPPED = "job.stopped_by_system"
STOP = {"stop_reason": "run_timeout", "message": "the job ran longer than the runbook's max_duration of 1s",
        "stopped_at": "2026-11-22T09:41:07+00:00", "step": {"order": 1, "title": "Confirm with the team"}}
SCHEMA = {"type": "object", "properties": {"service": {"type": "string"}}, "required": ["service"]}


def _run(operation: str, data: dict[str, Any], fields: dict[str, Any] | None = None) -> Any:
    return connector.run(operation, fields or SCRIPTED_FIELDS, data)


def _event(type_: str, event_id: int = 7, **payload: Any) -> dict[str, Any]:
    return {"id": event_id, "seq": 2, "type": type_, "created_at": "2026-11-22T09:41:07+00:00", "data": event_payload(type_, **payload)}


def _job(status: str, **overrides: Any) -> dict[str, Any]:
    """A job as the runner's job API shapes it (trimmed to what matters, plus fields the connector must drop)."""
    return {
        "uuid": JOB_UUID, "status": status, "environment": "eu-qa", "parameters": {"service": "orders-db"},
        "runbook": {"key": "RB-00007", "name": "restart-orders-db", "title": "Restart orders-db", "version": 3},
        "triggered_by": "runbook", "parent_job_uuid": PARENT_UUID, "root_job_uuid": PARENT_UUID, "depth": 1,
        "created_at": "2026-11-22T09:39:59+00:00", "started_at": "2026-11-22T09:40:00+00:00", "ended_at": None,
        "ended_by": None, "stop_reason": None, "message": None, "current_step": 1, "waiting_for": "operator",
        "steps": [{"order": 1, "title": "Confirm with the team", "status": "waiting", "started_at": "2026-11-22T09:40:00+00:00",
                   "completed_at": None, "note": None, "actor": None, "output": {}, "attempts": 0, "overdue": False}],
        "summary": {"eta": None, "children": []},
        **overrides,
    }


_STOPPED_JOB = _job("stopped", ended_at="2026-11-22T09:41:07+00:00", ended_by="system", current_step=None,
                    stop_reason="run_timeout", message=STOP["message"], waiting_for=None)


# --- outputs are exactly what the manifest declares --------------------------------------------------------------

def _receive_invoked(mocked: Any) -> Any:
    return _run("runbook_action.receive", delivery(INVOKED, SECRET, parameters={"service": "orders-db"}))


def _poll_invoked(mocked: Any) -> Any:
    mocked.get(f"{WS}/events", json={"items": [_event(INVOKED, parameters={"service": "orders-db"})], "next_cursor": "c1"})
    return _run("runbook_action.poll", {"runbook": "RB-00007"})["items"][0]


def _receive_stop(mocked: Any) -> Any:
    return _run("runbook_stopped_by_system.receive", delivery(STOPPED, SECRET, stop=STOP))


def _receive_stop_before_any_step(mocked: Any) -> Any:
    return _run("runbook_stopped_by_system.receive", delivery(STOPPED, SECRET, stop={**STOP, "step": None}, parent=None))


def _poll_stop(mocked: Any) -> Any:
    mocked.get(f"{WS}/events", json={"items": [_event(STOPPED, stop=STOP)], "next_cursor": "c1"})
    return _run("runbook_stopped_by_system.poll", {"runbooks": ["RB-00007"]})["items"][0]


def _execute_at_once(mocked: Any) -> Any:
    mocked.post(f"{WS}/runbooks/RB-00007/jobs", status=202, json={"job": _job("queued", started_at=None, current_step=None)})
    return _run("runbook_action.execute", {"runbook_action": "RB-00007", "parameters": {"service": "orders-db"}})


def _execute_and_wait(mocked: Any) -> Any:
    mocked.post(f"{WS}/runbooks/RB-00007/jobs", status=200, json={"job": _STOPPED_JOB})
    return _run("runbook_action.execute", {"runbook_action": "RB-00007", "parameters": {"service": "orders-db"}, "wait": True})


def _get_job(mocked: Any) -> Any:
    mocked.get(f"{WS}/jobs/{JOB_UUID}", json=_STOPPED_JOB)
    return _run("get_job.execute", {"job_uuid": JOB_UUID})


@pytest.mark.parametrize(("produce", "kind", "op_id"), [
    (_receive_invoked, "triggers", "runbook_action"),
    (_poll_invoked, "triggers", "runbook_action"),
    (_receive_stop, "triggers", "runbook_stopped_by_system"),
    (_receive_stop_before_any_step, "triggers", "runbook_stopped_by_system"),
    (_poll_stop, "triggers", "runbook_stopped_by_system"),
    (_execute_at_once, "actions", "runbook_action"),
    (_execute_and_wait, "actions", "runbook_action"),
    (_get_job, "actions", "get_job"),
], ids=lambda v: getattr(v, "__name__", "").lstrip("_") or None)
def test_handler_output_has_exactly_the_declared_fields(mocked, produce: Callable[[Any], Any], kind: str, op_id: str) -> None:
    assert_matches_declared(produce(mocked), declared_output(kind, op_id))


def test_received_invocation_carries_the_parameters_job_and_lineage(mocked) -> None:
    output = _receive_invoked(mocked)
    assert output["parameters"] == {"service": "orders-db"}
    assert output["job"] == {"uuid": JOB_UUID}
    assert output["lineage"] == {"parent_job_uuid": PARENT_UUID, "root_job_uuid": PARENT_UUID, "depth": 1}
    assert len(mocked.calls) == 0, "receiving a delivery must not call the runner"


def test_received_stop_carries_reason_message_step_and_time(mocked) -> None:
    output = _receive_stop(mocked)
    assert {k: output[k] for k in ("stop_reason", "message", "stopped_at", "step")} == STOP
    assert (output["job"]["uuid"], output["runbook"]["key"], output["environment"]) == (JOB_UUID, "RB-00007", "eu-qa")


@pytest.mark.parametrize(("status", "finished"), [(202, False), (200, True)])
def test_execute_reports_finished_only_when_the_runner_saw_the_job_end(mocked, status: int, finished: bool) -> None:
    job = _STOPPED_JOB if finished else _job("running")
    mocked.post(f"{WS}/runbooks/RB-00007/jobs", status=status, json={"job": job})
    output = _run("runbook_action.execute", {"runbook_action": "RB-00007", "wait": True, "timeout_seconds": 5})
    assert (output["finished"], output["status"]) == (finished, job["status"])
    assert body_of(mocked.calls[0])["wait"] == 5


@pytest.mark.parametrize(("data", "wait"), [
    ({}, None),
    ({"wait": False, "timeout_seconds": 30}, None),
    ({"wait": True}, 60),
    ({"wait": True, "timeout_seconds": 12.5}, 12.5),
    ({"wait": True, "timeout_seconds": 3600}, 300),
], ids=["no-wait", "wait-off", "wait-default", "wait-given", "wait-capped"])
def test_execute_asks_the_runner_to_wait_only_when_told(mocked, data: dict[str, Any], wait: float | None) -> None:
    mocked.post(f"{WS}/runbooks/RB-00007/jobs", status=202, json={"job": _job("queued")})
    _run("runbook_action.execute", {"runbook_action": "RB-00007", "parameters": {"service": "orders-db"}, **data})
    body = body_of(mocked.calls[0])
    assert body.get("wait") == wait
    assert body["parameters"] == {"service": "orders-db"}


# --- deliveries are verified ---------------------------------------------------------------------------------

def _signed_with_another_secret(d: dict[str, Any]) -> None:
    d["headers"] = delivery(INVOKED, generate_secret(), parameters={"service": "orders-db"})["headers"]


def _tampered_body(d: dict[str, Any]) -> None:
    message = json.loads(d["body"])
    message["data"]["parameters"]["service"] = "payments-db"
    d["body"] = json.dumps(message, separators=(",", ":")).encode()


def _stale(d: dict[str, Any]) -> None:
    d.update(delivery(INVOKED, SECRET, parameters={"service": "orders-db"}, timestamp=int(time.time()) - 3600))


def _from_the_future(d: dict[str, Any]) -> None:
    d.update(delivery(INVOKED, SECRET, parameters={"service": "orders-db"}, timestamp=int(time.time()) + 3600))


def _without(header: str) -> Callable[[dict[str, Any]], None]:
    def strip(d: dict[str, Any]) -> None:
        del d["headers"][header]

    strip.__name__ = f"without_{header}"
    return strip


def _no_headers(d: dict[str, Any]) -> None:
    d["headers"] = {}


def _garbled_signature(d: dict[str, Any]) -> None:
    d["headers"]["webhook-signature"] = "v1,bm90IGEgc2lnbmF0dXJl"


@pytest.mark.parametrize("spoil", [
    _signed_with_another_secret, _tampered_body, _stale, _from_the_future, _garbled_signature, _no_headers,
    _without("webhook-id"), _without("webhook-timestamp"), _without("webhook-signature"),
], ids=lambda f: f.__name__.lstrip("_"))
def test_unverifiable_delivery_is_refused(mocked, spoil: Callable[[dict[str, Any]], None]) -> None:
    received = delivery(INVOKED, SECRET, parameters={"service": "orders-db"})
    spoil(received)
    with pytest.raises(VerificationFailed, match="refused the delivery"):
        _run("runbook_action.receive", received)
    assert len(mocked.calls) == 0


def test_a_good_delivery_passes_the_checks_the_spoilt_ones_fail(mocked) -> None:
    assert _run("runbook_action.receive", delivery(INVOKED, SECRET, parameters={"service": "orders-db"}))["job"]["uuid"] == JOB_UUID


@pytest.mark.parametrize(("operation", "event_type", "payload"), [
    ("runbook_action.receive", INVOKED, {"parameters": {}}),
    ("runbook_stopped_by_system.receive", STOPPED, {"stop": STOP}),
])
def test_delivery_from_another_environment_is_refused_naming_both(mocked, operation: str, event_type: str, payload: dict[str, Any]) -> None:
    received = delivery(event_type, SECRET, environment="eu-production", **payload)
    with pytest.raises(VerificationFailed) as raised:
        _run(operation, received)
    assert "eu-production" in raised.value.message and "eu-qa" in raised.value.message


def test_delivery_without_an_environment_header_is_refused(mocked) -> None:
    received = delivery(INVOKED, SECRET, parameters={})
    del received["headers"]["X-Runbook-Environment"]
    with pytest.raises(VerificationFailed, match="eu-qa"):
        _run("runbook_action.receive", received)


@pytest.mark.parametrize(("operation", "event_type", "payload"), [
    ("runbook_action.receive", STOPPED, {"stop": STOP}),
    ("runbook_action.receive", "job.succeeded", {}),
    ("runbook_stopped_by_system.receive", INVOKED, {"parameters": {}}),
    ("runbook_stopped_by_system.receive", "job.cancelled", {}),
])
def test_delivery_of_another_event_type_is_refused(mocked, operation: str, event_type: str, payload: dict[str, Any]) -> None:
    with pytest.raises(VerificationFailed) as raised:
        _run(operation, delivery(event_type, SECRET, **payload))
    assert event_type in raised.value.message


# --- subscribing --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("data", [
    {"target_url": "https://flows.example.com/hook", "runbooks": []},
    {"target_url": "https://flows.example.com/hook"},
    {"target_url": "https://flows.example.com/hook", "runbooks": [""]},
    {"target_url": "https://flows.example.com/hook", "runbooks": "RB-00001"},
], ids=["empty", "missing", "blank-entry", "not-a-list"])
def test_stop_trigger_without_runbooks_is_refused_before_any_call(mocked, data: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="runbooks"):
        _run("runbook_stopped_by_system.subscribe", data)
    assert len(mocked.calls) == 0


def test_stop_trigger_subscribes_to_system_stops_of_the_listed_runbooks(mocked) -> None:
    mocked.post(f"{WS}/hooks", status=201, json={"id": "sub_1", "secret": SECRET, "runbooks": ["RB-00001", "RB-00002"], "expires_at": None})
    out = _run("runbook_stopped_by_system.subscribe", {"target_url": "https://flows.example.com/hook", "runbooks": ["RB-00001", "nightly"]})
    assert body_of(mocked.calls[0]) == {"events": [STOPPED], "runbooks": ["RB-00001", "nightly"], "target_url": "https://flows.example.com/hook"}
    assert (out["id"], out["secret"]) == ("sub_1", SECRET)


def _runbook(status: str, parameters: dict[str, Any], callable_: bool) -> dict[str, Any]:
    return {"key": "RB-00003", "name": "flow-child", "title": "Flow child", "status": status, "parameters": parameters,
            "callable": callable_, "version": 1}


_OLD_SCHEMA = {"type": "object", "properties": {"host": {"type": "string"}}}


@pytest.mark.parametrize(("existing", "expected"), [
    (None, [("GET", "/runbooks/flow-child"), ("POST", "/runbooks"), ("POST", "/runbooks/RB-00003/publish"), ("POST", "/hooks")]),
    (_runbook("published", _OLD_SCHEMA, True), [("GET", "/runbooks/flow-child"), ("PATCH", "/runbooks/RB-00003"), ("POST", "/hooks")]),
    (_runbook("published", SCHEMA, False), [("GET", "/runbooks/flow-child"), ("PATCH", "/runbooks/RB-00003"), ("POST", "/hooks")]),
    (_runbook("draft", SCHEMA, True), [("GET", "/runbooks/flow-child"), ("POST", "/runbooks/RB-00003/publish"), ("POST", "/hooks")]),
    (_runbook("published", SCHEMA, True), [("GET", "/runbooks/flow-child"), ("POST", "/hooks")]),
], ids=["missing", "other-parameters", "not-callable", "draft", "up-to-date"])
def test_runbook_action_subscribe_makes_the_runbook_callable_then_subscribes(mocked, existing: dict[str, Any] | None,
                                                                              expected: list[tuple[str, str]]) -> None:
    if existing is None:
        mocked.get(f"{WS}/runbooks/flow-child", status=404, json={"status": 404, "detail": "runbook 'flow-child' not found"})
        mocked.post(f"{WS}/runbooks", status=201, json=_runbook("draft", SCHEMA, True))
    else:
        mocked.get(f"{WS}/runbooks/flow-child", json=existing)
    if ("PATCH", "/runbooks/RB-00003") in expected:
        mocked.patch(f"{WS}/runbooks/RB-00003", json={**copy.deepcopy(existing), "parameters": SCHEMA, "callable": True, "version": 2})
    if ("POST", "/runbooks/RB-00003/publish") in expected:
        mocked.post(f"{WS}/runbooks/RB-00003/publish", json=_runbook("published", SCHEMA, True))
    mocked.post(f"{WS}/hooks", status=201, json={"id": "sub_9", "secret": SECRET, "runbooks": ["RB-00003"], "expires_at": None})

    out = _run("runbook_action.subscribe", {"runbook": "flow-child", "parameters": SCHEMA, "target_url": "https://flows.example.com/in"})

    assert [(c.request.method, urlsplit(c.request.url).path.removeprefix("/api/v1/ws/acme")) for c in mocked.calls] == expected
    sent = {(c.request.method, urlsplit(c.request.url).path.removeprefix("/api/v1/ws/acme")): body_of(c) for c in mocked.calls}
    if ("POST", "/runbooks") in sent:
        assert {k: sent[("POST", "/runbooks")][k] for k in ("name", "callable", "parameters")} == \
            {"name": "flow-child", "callable": True, "parameters": SCHEMA}
    if ("PATCH", "/runbooks/RB-00003") in sent:
        assert sent[("PATCH", "/runbooks/RB-00003")] == {"parameters": SCHEMA, "callable": True}
    assert sent[("POST", "/hooks")] == {"events": [INVOKED], "runbooks": ["RB-00003"], "target_url": "https://flows.example.com/in"}
    assert (out["id"], out["secret"], out["runbook"]) == ("sub_9", SECRET, "RB-00003")


def test_runbook_action_subscribe_does_not_create_on_other_errors(mocked) -> None:
    mocked.get(f"{WS}/runbooks/flow-child", status=403, json={"status": 403, "detail": "members may not read drafts"})
    with pytest.raises(connector.FatalError, match="members may not read drafts"):
        _run("runbook_action.subscribe", {"runbook": "flow-child", "parameters": SCHEMA, "target_url": "https://flows.example.com/in"})
    assert len(mocked.calls) == 1


def _page(keys: list[str], cursor: str | None) -> dict[str, Any]:
    return {"items": [{"key": k, "title": f"Runbook {k}"} for k in keys], "next_cursor": cursor}


def test_pick_list_follows_next_cursor_across_pages(mocked) -> None:
    mocked.get(f"{WS}/runbooks", json=_page(["RB-00001", "RB-00002"], "page-2"))
    mocked.get(f"{WS}/runbooks", json=_page(["RB-00005"], "page-3"))
    mocked.get(f"{WS}/runbooks", json=_page([], None))

    choices = _run("runbook_action.pick_list", {})

    assert [c["value"] for c in choices] == ["RB-00001", "RB-00002", "RB-00005"]
    assert choices[0]["label"] == "Runbook RB-00001 (RB-00001)"
    queries = [parse_qs(urlsplit(c.request.url).query) for c in mocked.calls]
    assert [q.get("cursor") for q in queries] == [None, ["page-2"], ["page-3"]]
    assert all(q["status"] == ["published"] and q["callable"] == ["true"] for q in queries)


@pytest.mark.parametrize(("parameters", "schema"), [
    (SCHEMA, SCHEMA),
    ({}, {"type": "object", "properties": {}}),
], ids=["declared", "none-declared"])
def test_parameters_schema_is_the_chosen_runbooks(mocked, parameters: dict[str, Any], schema: dict[str, Any]) -> None:
    mocked.get(f"{WS}/runbooks/RB-00003", json=_runbook("published", parameters, True))
    assert _run("runbook_action.parameters_schema", {"runbook_action": "RB-00003"}) == schema


# --- the operations both triggers share -----------------------------------------------------------------------------

def test_renew_moves_the_subscriptions_expiry(mocked) -> None:
    mocked.patch(f"{WS}/hooks/sub_1", json={"id": "sub_1", "expires_at": "2026-12-01T00:00:00+00:00", "status": "active"})
    out = _run("subscription.renew", {"id": "sub_1", "expires_at": "2026-12-01T00:00:00+00:00"})
    assert body_of(mocked.calls[0]) == {"expires_at": "2026-12-01T00:00:00+00:00"}
    assert out == {"id": "sub_1", "expires_at": "2026-12-01T00:00:00+00:00", "status": "active"}


@pytest.mark.parametrize("status", [204, 404], ids=["removed-now", "already-removed"])
def test_unsubscribe_counts_an_already_removed_subscription_as_removed(mocked, status: int) -> None:
    mocked.delete(f"{WS}/hooks/sub_1", status=status, **({"json": {"status": 404, "detail": "no such subscription"}} if status == 404 else {}))
    assert _run("subscription.unsubscribe", {"id": "sub_1"}) == {"id": "sub_1", "unsubscribed": True}


def test_unsubscribe_refused_for_another_reason_fails(mocked) -> None:
    mocked.delete(f"{WS}/hooks/sub_1", status=403, json={"status": 403, "detail": "members may not manage subscriptions"})
    with pytest.raises(connector.FatalError, match="members may not manage subscriptions"):
        _run("subscription.unsubscribe", {"id": "sub_1"})
