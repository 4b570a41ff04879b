"""Odd answers and unusable inputs end as the connector's own errors, never as a bare exception or a wrong result."""
from __future__ import annotations

import math
from typing import Any

import pytest

import connector
from connector import ConfigurationError, FatalError, RunnerClient
from tests.connector.conftest import SCRIPTED_FIELDS, SCRIPTED_URL

WS = f"{SCRIPTED_URL}/api/v1/ws/acme"
JOB_UUID = "6f1c2f0e-8a4b-4d7e-9c61-2b3a4d5e6f70"


def _run(client: RunnerClient, operation: str, data: Any) -> Any:
    return connector.run(operation, SCRIPTED_FIELDS, data, client=client)


def test_a_redirect_is_not_followed_so_an_invocation_never_turns_into_a_read(mocked, runner_client) -> None:
    """A POST followed to another URL arrives there as a GET: the job read back would be reported as invoked and finished."""
    mocked.post(f"{WS}/runbooks/RB-00001/jobs", status=302, headers={"Location": f"{WS}/jobs/{JOB_UUID}"})

    with pytest.raises(FatalError) as raised:
        _run(runner_client, "runbook_action.execute", {"runbook_action": "RB-00001"})

    assert "redirect" in raised.value.message and f"/jobs/{JOB_UUID}" in raised.value.message
    assert [call.request.method for call in mocked.calls] == ["POST"]


@pytest.mark.parametrize("body", ["<html>Sign in to the proxy</html>", "{\"job\": "], ids=["html", "truncated"])
def test_a_success_whose_body_is_not_a_json_object_is_fatal_naming_the_runner(mocked, runner_client, body: str) -> None:
    mocked.get(f"{WS}/jobs/{JOB_UUID}", status=200, body=body, content_type="application/json")

    with pytest.raises(FatalError) as raised:
        _run(runner_client, "get_job.execute", {"job_uuid": JOB_UUID})

    assert SCRIPTED_URL in raised.value.message


@pytest.mark.parametrize(("operation", "url", "answer", "data"), [
    ("get_job.execute", f"{WS}/jobs/{JOB_UUID}", {"job": None}, {"job_uuid": JOB_UUID}),
    ("runbook_action.execute", f"{WS}/runbooks/RB-00001/jobs", {"id": 1}, {"runbook_action": "RB-00001"}),
    ("runbook_action.pick_list", f"{WS}/runbooks", {"items": [None]}, {}),
    ("get_job.execute", f"{WS}/jobs/{JOB_UUID}", [1, 2], {"job_uuid": JOB_UUID}),
    ("runbook_stopped_by_system.poll", f"{WS}/events", {"items": [{"no": "data"}], "next_cursor": "x"}, {"runbooks": ["RB-00001"]}),
], ids=["get-job", "execute", "pick-list", "a-list", "poll"])
def test_an_answer_of_a_shape_the_connector_does_not_know_is_fatal(mocked, runner_client, operation, url, answer, data) -> None:
    mocked.add("POST" if operation.endswith("execute") and "runbook" in operation else "GET", url, json=answer, status=200)

    with pytest.raises(FatalError) as raised:
        _run(runner_client, operation, data)

    assert operation in raised.value.message


def test_an_input_that_is_not_an_object_is_a_configuration_error(runner_client) -> None:
    with pytest.raises(ConfigurationError):
        _run(runner_client, "get_job.execute", [JOB_UUID])


def test_a_nan_parameter_is_fatal_at_once_not_retried_as_unreachable(mocked, runner_client, sleeps) -> None:
    with pytest.raises(FatalError) as raised:
        _run(runner_client, "runbook_action.execute", {"runbook_action": "RB-00001", "parameters": {"replicas": math.nan}})

    assert "could not be sent" in raised.value.message
    assert (len(mocked.calls), sleeps) == (0, [])


def test_a_header_that_cannot_be_sent_is_fatal_and_not_repeated(mocked, runner_client, sleeps) -> None:
    with pytest.raises(FatalError) as raised:
        _run(runner_client, "runbook_action.execute", {"runbook_action": "RB-00001", "idempotency_key": "deploy\n42"})

    assert "a header value is not valid" in raised.value.message and "deploy" not in raised.value.message
    assert (len(mocked.calls), sleeps) == (0, [])


@pytest.mark.parametrize("ref", ["x/../RB-00002", "RB-00001?wait=1", "RB-00001#x"])
def test_an_id_is_one_path_segment_and_cannot_reach_another_route(mocked, runner_client, ref: str) -> None:
    mocked.get(f"{WS}/runbooks/{connector.client.segment(ref)}", json={"parameters": {}}, status=200)

    _run(runner_client, "runbook_action.parameters_schema", {"runbook_action": ref})

    assert mocked.calls[0].request.url == f"{WS}/runbooks/{connector.client.segment(ref)}"
    assert "/" not in connector.client.segment(ref) and "?" not in connector.client.segment(ref)


@pytest.mark.parametrize("timeout", [0, -5, "soon", math.inf, math.nan, True, [30], 10**400])
def test_a_wait_timeout_that_is_no_positive_number_is_a_configuration_error(mocked, runner_client, timeout: Any) -> None:
    """It was sent as 60 seconds (0), as a negative wait (-5), as 300 (infinity) or as 1 (true), or raised a bare error."""
    with pytest.raises(ConfigurationError) as raised:
        _run(runner_client, "runbook_action.execute", {"runbook_action": "RB-00001", "wait": True, "timeout_seconds": timeout})

    assert "timeout_seconds" in raised.value.message
    assert len(mocked.calls) == 0


@pytest.mark.parametrize(("field", "value"), [("environment", ["eu-qa"]), ("base_url", 5), ("workspace", 7), ("api_token", {"t": 1})])
def test_a_connection_field_that_is_not_text_is_a_configuration_error(field: str, value: Any) -> None:
    with pytest.raises(ConfigurationError) as raised:
        connector.Connection.from_fields({**SCRIPTED_FIELDS, field: value})

    assert field in raised.value.message
