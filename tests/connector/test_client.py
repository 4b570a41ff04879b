"""The connector's HTTP client: retries what may pass later, fails at once on refusals, and always says who and where."""
from __future__ import annotations

from typing import Any

import pytest
import requests
import responses

import connector
from connector import ConfigurationError, Connection, FatalError, RetriableError, RunnerClient
from connector.spec import load_manifest
from tests.connector.conftest import SCRIPTED_FIELDS, SCRIPTED_URL

ENVIRONMENT_URL = f"{SCRIPTED_URL}/api/v1/environment"
JOBS_URL = f"{SCRIPTED_URL}/api/v1/ws/acme/runbooks/RB-00001/jobs"
JOB_ANSWER = {"job": {"uuid": "6f1c2f0e-8a4b-4d7e-9c61-2b3a4d5e6f70", "status": "queued"}}


def _problem(status: int, detail: str) -> dict[str, Any]:
    return {"type": f"https://runbook-manager.invalid/problems/{status}", "title": "Problem", "status": status, "detail": detail}


def _invoke(client: RunnerClient, **data: Any) -> dict[str, Any]:
    return connector.run("runbook_action.execute", SCRIPTED_FIELDS, {"runbook_action": "RB-00001", **data}, client=client)


def test_two_503s_then_200_succeeds_after_two_growing_sleeps(mocked, runner_client, sleeps) -> None:
    for status in (503, 503):
        mocked.get(ENVIRONMENT_URL, status=status, json=_problem(status, "the runner is starting"))
    mocked.get(ENVIRONMENT_URL, status=200, json={"id": "eu-qa", "label": "EU QA"})

    status, body = runner_client.request("GET", ENVIRONMENT_URL)

    assert (status, body) == (200, {"id": "eu-qa", "label": "EU QA"})
    assert len(mocked.calls) == 3
    assert len(sleeps) == 2 and 0 < sleeps[0] < sleeps[1], sleeps


@pytest.mark.parametrize("retry_after", [3, 7])
def test_429_waits_as_long_as_retry_after_says(mocked, runner_client, sleeps, retry_after: int) -> None:
    mocked.get(ENVIRONMENT_URL, status=429, json=_problem(429, "slow down"), headers={"Retry-After": str(retry_after)})
    mocked.get(ENVIRONMENT_URL, status=200, json={"id": "eu-qa"})

    assert runner_client.request("GET", ENVIRONMENT_URL)[0] == 200
    assert sleeps == [pytest.approx(retry_after)]


def test_connection_error_then_200_succeeds(mocked, runner_client, sleeps) -> None:
    mocked.get(ENVIRONMENT_URL, body=requests.ConnectionError("connection refused"))
    mocked.get(ENVIRONMENT_URL, status=200, json={"id": "eu-qa"})

    assert runner_client.request("GET", ENVIRONMENT_URL) == (200, {"id": "eu-qa"})
    assert len(mocked.calls) == 2 and len(sleeps) == 1


def test_unreachable_runner_on_every_attempt_is_retriable_and_names_the_url(mocked, runner_client) -> None:
    for _ in range(runner_client.attempts):
        mocked.get(ENVIRONMENT_URL, body=requests.ConnectionError("connection refused"))

    with pytest.raises(RetriableError) as raised:
        runner_client.request("GET", ENVIRONMENT_URL)
    assert SCRIPTED_URL in raised.value.message and raised.value.status is None


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_on_every_attempt_is_retriable_with_the_status_and_the_runners_detail(mocked, runner_client, sleeps, status: int) -> None:
    problem = _problem(status, f"the store is unavailable (HTTP {status})")
    for _ in range(runner_client.attempts):
        mocked.get(ENVIRONMENT_URL, status=status, json=problem)

    with pytest.raises(RetriableError) as raised:
        runner_client.request("GET", ENVIRONMENT_URL)

    assert (raised.value.status, raised.value.message, raised.value.problem) == (status, problem["detail"], problem)
    assert len(mocked.calls) == runner_client.attempts
    assert len(sleeps) == runner_client.attempts - 1


@pytest.mark.parametrize(("status", "detail"), [
    (400, "send the body as application/json, got 'text/plain'"),
    (404, "runbook 'RB-00404' not found in workspace 'acme'"),
    (409, "RB-00001 is a draft; publish it before invoking it"),
    (421, "this runner serves EU QA (eu-qa), but the request targets EU Production (eu-production)"),
    (422, "parameters.service: 'service' is a required property"),
])
def test_refused_request_fails_at_once_with_the_runners_detail_verbatim(mocked, runner_client, sleeps, status: int, detail: str) -> None:
    mocked.post(JOBS_URL, status=status, json=_problem(status, detail), content_type="application/problem+json")

    with pytest.raises(FatalError) as raised:
        _invoke(runner_client)

    assert raised.value.message == detail and str(raised.value) == detail
    assert raised.value.status == status
    assert len(mocked.calls) == 1 and sleeps == []


def test_every_request_says_who_and_which_environment(mocked, runner_client) -> None:
    mocked.get(ENVIRONMENT_URL, json={"id": "eu-qa", "label": "EU QA"})
    mocked.get(f"{SCRIPTED_URL}/api/v1/ws/acme", json={"slug": "acme", "subject": "olivia", "role": "owner"})
    mocked.post(JOBS_URL, status=202, json=JOB_ANSWER)
    mocked.get(f"{SCRIPTED_URL}/api/v1/ws/acme/jobs/{JOB_ANSWER['job']['uuid']}", status=404, json=_problem(404, "no such job"))

    connector.run("connection.test", SCRIPTED_FIELDS, client=runner_client)
    _invoke(runner_client)
    with pytest.raises(FatalError):
        connector.run("get_job.execute", SCRIPTED_FIELDS, {"job_uuid": JOB_ANSWER["job"]["uuid"]}, client=runner_client)

    assert len(mocked.calls) == 4
    for call in mocked.calls:
        assert call.request.headers["Authorization"] == f"Bearer {SCRIPTED_FIELDS['api_token']}", call.request.url
        assert call.request.headers["X-Runbook-Environment"] == SCRIPTED_FIELDS["environment"], call.request.url


def test_invocation_keeps_one_idempotency_key_across_its_retries(mocked, runner_client) -> None:
    mocked.post(JOBS_URL, status=503, json=_problem(503, "busy"))
    mocked.post(JOBS_URL, body=requests.ConnectionError("reset"))
    mocked.post(JOBS_URL, status=202, json=JOB_ANSWER)

    assert _invoke(runner_client)["job"]["uuid"] == JOB_ANSWER["job"]["uuid"]

    keys = [call.request.headers.get("Idempotency-Key") for call in mocked.calls]
    assert len(keys) == 3 and keys[0] and len(set(keys)) == 1, keys


def test_each_invocation_gets_its_own_idempotency_key(mocked, runner_client) -> None:
    mocked.post(JOBS_URL, status=202, json=JOB_ANSWER)
    mocked.post(JOBS_URL, status=202, json=JOB_ANSWER)

    _invoke(runner_client)
    _invoke(runner_client)

    first, second = (call.request.headers.get("Idempotency-Key") for call in mocked.calls)
    assert first and second and first != second


def test_given_idempotency_key_is_sent_as_is(mocked, runner_client) -> None:
    mocked.post(JOBS_URL, status=202, json=JOB_ANSWER)

    _invoke(runner_client, idempotency_key="flow-42-step-3")

    assert mocked.calls[0].request.headers["Idempotency-Key"] == "flow-42-step-3"


@pytest.mark.parametrize("environment", [e["id"] for e in load_manifest()["connection"]["environments"]])
def test_environment_picks_the_manifests_default_base_url(environment: str) -> None:
    declared = next(e for e in load_manifest()["connection"]["environments"] if e["id"] == environment)
    connection = Connection.from_fields({"environment": environment, "api_token": "t", "workspace": "acme"})
    assert connection.base_url == declared["default_base_url"].rstrip("/")
    assert connection.label == declared["label"]


def test_base_url_overrides_the_environments_default(mocked) -> None:
    connection = Connection.from_fields({**SCRIPTED_FIELDS, "environment": "eu-production", "base_url": "http://127.0.0.1:9999/"})
    mocked.get("http://127.0.0.1:9999/api/v1/environment", json={"id": "eu-production"})
    client = RunnerClient(connection)

    client.request("GET", client.url("/api/v1/environment"))

    assert connection.base_url == "http://127.0.0.1:9999"
    assert mocked.calls[0].request.headers["X-Runbook-Environment"] == "eu-production"


def _without(name: str) -> dict[str, Any]:
    return {k: v for k, v in SCRIPTED_FIELDS.items() if k != name}


@pytest.mark.parametrize(("fields", "mentions"), [
    ({**SCRIPTED_FIELDS, "environment": "us-production"}, "us-production"),
    (_without("environment"), "environment"),
    (_without("api_token"), "api_token"),
    ({**SCRIPTED_FIELDS, "api_token": ""}, "api_token"),
    (_without("workspace"), "workspace"),
    ({**SCRIPTED_FIELDS, "base_url": "ftp://runner.example.com"}, "ftp://runner.example.com"),
    ({**SCRIPTED_FIELDS, "base_url": "runner.example.com"}, "runner.example.com"),
], ids=["unknown-environment", "no-environment", "missing-token", "empty-token", "no-workspace", "ftp-url", "bare-host"])
def test_unusable_connection_is_refused_before_anything_is_sent(mocked, fields: dict[str, Any], mentions: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        connector.run("connection.test", fields)
    assert mentions in raised.value.message
    assert len(mocked.calls) == 0


def test_unknown_operation_is_refused(mocked) -> None:
    with pytest.raises(ConfigurationError, match="runbook_action.teleport"):
        connector.run("runbook_action.teleport", SCRIPTED_FIELDS)
