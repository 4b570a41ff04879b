"""The connector against real runner processes: environments, invoking, flow-backed runbooks, stop monitoring, the CLI."""
from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from click.testing import CliRunner

import connector
from connector import FatalError
from runner.cli import main
from tests.connector.conftest import LiveRunner
from tests.connector.helpers import assert_matches_declared, declared_output
from tests.processes import wait_until
from tests.servers import CountingServer

pytestmark = pytest.mark.slow

SCHEMA = {"type": "object", "properties": {"service": {"type": "string"}}, "required": ["service"]}
ENDED = ("succeeded", "failed", "cancelled", "stopped")
# Longest a test waits for the runner to act on its own (a stop, a delivery).
ACT_WITHIN = 10.0


def _http_runbook(runner: LiveRunner, server: CountingServer, name: str) -> str:
    """A published callable runbook whose one http step calls ``server`` at /restart/<service>."""
    return runner.runbook({
        "name": name, "title": f"Restart a service ({name})", "callable": True, "parameters": SCHEMA,
        "steps": [{"title": "Restart {{ params.service }}",
                   "action": {"type": "http", "method": "POST", "url": server.url + "/restart/{{ params.service }}"}}],
    })


def _timing_out_runbook(runner: LiveRunner, name: str) -> str:
    """A published callable runbook the system stops after 1 s: its only step waits for a person."""
    return runner.runbook({"name": name, "title": f"Wait for a person ({name})", "callable": True, "max_duration_seconds": 1,
                           "steps": [{"title": "Confirm with the team"}]})


def _job(runner: LiveRunner, job_uuid: str) -> dict[str, Any]:
    answer = runner.api("GET", f"/jobs/{job_uuid}")
    assert answer.status_code == 200, answer.text
    return answer.json()


def _ended(runner: LiveRunner, job_uuid: str) -> dict[str, Any]:
    return wait_until(lambda: (job := _job(runner, job_uuid))["status"] in ENDED and job, timeout=ACT_WITHIN, interval=0.1,
                      what=f"job {job_uuid} ending")


def _received(server: CountingServer, path: str) -> list[dict[str, Any]]:
    with server.lock:
        return [r for r in server.requests if r["path"] == path]


# --- a. environment targeting ----------------------------------------------------------------------------------

@pytest.mark.parametrize("environment", ["eu-production", "eu-qa"])
def test_connection_test_passes_against_the_runner_of_its_environment(start_runner, environment: str) -> None:
    runner = start_runner(environment)
    result = connector.run("connection.test", runner.fields())
    labels = {"eu-production": "EU Production", "eu-qa": "EU QA"}
    assert result == {"ok": True, "environment": {"id": environment, "label": labels[environment]},
                      "workspace": "acme", "subject": "olivia", "role": "owner"}


def test_connection_to_another_environments_runner_fails_with_the_runners_421_detail(start_runner) -> None:
    production, qa = start_runner("eu-production"), start_runner("eu-qa")
    assert connector.run("connection.test", production.fields())["environment"]["id"] == "eu-production"

    with pytest.raises(FatalError) as raised:
        connector.run("connection.test", production.fields(base_url=qa.url))

    refused = requests.get(qa.url + "/api/v1/environment", headers={"X-Runbook-Environment": "eu-production"}, timeout=5)
    assert refused.status_code == 421
    assert raised.value.status == 421
    assert raised.value.message == refused.json()["detail"]
    assert "EU QA" in raised.value.message and "EU Production" in raised.value.message


# --- b. a parent flow invoking a child runbook -------------------------------------------------------------------

def test_parent_flow_waits_for_the_child_and_reads_its_timeline(live: LiveRunner, server: CountingServer) -> None:
    key = _http_runbook(live, server, "restart-child")

    invoked = connector.run("runbook_action.execute", live.fields(), {
        "runbook_action": key, "parameters": {"service": "orders-db"}, "wait": True, "timeout_seconds": 30})

    assert_matches_declared(invoked, declared_output("actions", "runbook_action"))
    assert (invoked["finished"], invoked["status"]) == (True, "succeeded")
    assert server.hits["/restart/orders-db"] == 1
    job = connector.run("get_job.execute", live.fields(), {"job_uuid": invoked["job"]["uuid"]})
    assert_matches_declared(job, declared_output("actions", "get_job"))
    assert (job["job"]["uuid"], job["status"], job["runbook"]["key"]) == (invoked["job"]["uuid"], "succeeded", key)
    assert [(s["order"], s["title"], s["status"]) for s in job["steps"]] == [(1, "Restart orders-db", "done")]
    assert job["steps"][0]["started_at"] and job["steps"][0]["completed_at"]


def test_retried_invocation_with_the_same_idempotency_key_returns_the_same_job(live: LiveRunner, server: CountingServer) -> None:
    key = _http_runbook(live, server, "restart-once")
    data = {"runbook_action": key, "parameters": {"service": "cache"}, "wait": True, "timeout_seconds": 30,
            "idempotency_key": "flow-7-step-2"}

    first = connector.run("runbook_action.execute", live.fields(), data)
    again = connector.run("runbook_action.execute", live.fields(), data)

    assert again["job"]["uuid"] == first["job"]["uuid"]
    assert server.hits["/restart/cache"] == 1, "the retry started another job"
    assert len(live.api("GET", "/jobs", params={"runbook": key}).json()["items"]) == 1


# --- c. a flow-backed child -------------------------------------------------------------------------------------

def test_flow_backed_runbook_delivers_its_invocation_to_the_flow(live: LiveRunner, server: CountingServer) -> None:
    subscription = connector.run("runbook_action.subscribe", live.fields(), {
        "runbook": "flow-child", "parameters": SCHEMA, "target_url": server.url + "/flow", "title": "Flow child"})

    invoked = connector.run("runbook_action.execute", live.fields(), {
        "runbook_action": subscription["runbook"], "parameters": {"service": "orders-db"}, "wait": True, "timeout_seconds": 30})

    assert (invoked["finished"], invoked["status"]) == (True, "succeeded"), invoked
    deliveries = _received(server, "/flow")
    assert len(deliveries) == 1
    output = connector.run("runbook_action.receive", live.fields(), {
        "secret": subscription["secret"], "headers": deliveries[0]["headers"], "body": deliveries[0]["body"]})
    assert_matches_declared(output, declared_output("triggers", "runbook_action"))
    assert output["parameters"] == {"service": "orders-db"}
    assert output["job"]["uuid"] == invoked["job"]["uuid"]
    assert output["runbook"]["key"] == subscription["runbook"] and output["environment"] == "eu-qa"


def test_flow_backed_job_succeeds_only_once_the_flow_answered_200(live: LiveRunner, server: CountingServer) -> None:
    server.script("/flow-late", 503)
    subscription = connector.run("runbook_action.subscribe", live.fields(), {
        "runbook": "flow-late", "parameters": SCHEMA, "target_url": server.url + "/flow-late"})

    invoked = connector.run("runbook_action.execute", live.fields(), {
        "runbook_action": subscription["runbook"], "parameters": {"service": "orders-db"}, "wait": True, "timeout_seconds": 30})

    assert (invoked["finished"], invoked["status"]) == (True, "succeeded"), invoked
    assert server.hits["/flow-late"] == 2, "the job ended before the flow acknowledged the delivery"
    attempts = live.api("GET", f"/hooks/{subscription['id']}/deliveries").json()["items"][0]["attempt_log"]
    assert [a["status"] for a in attempts] == [503, 200]


def test_flow_backed_runbook_is_created_callable_with_the_triggers_schema(live: LiveRunner, server: CountingServer) -> None:
    subscription = connector.run("runbook_action.subscribe", live.fields(), {
        "runbook": "flow-schema", "parameters": SCHEMA, "target_url": server.url + "/flow-schema"})

    runbook = live.api("GET", f"/runbooks/{subscription['runbook']}").json()
    assert (runbook["status"], runbook["callable"], runbook["parameters"]) == ("published", True, SCHEMA)
    choices = connector.run("runbook_action.pick_list", live.fields())
    assert subscription["runbook"] in [c["value"] for c in choices]
    with pytest.raises(FatalError, match="service"):
        connector.run("runbook_action.execute", live.fields(), {"runbook_action": subscription["runbook"], "parameters": {}})


# --- d. a monitor receiving a stop ---------------------------------------------------------------------------------

def test_monitor_receives_a_system_stop_within_seconds_and_never_a_persons_abort(live: LiveRunner, server: CountingServer) -> None:
    key = _timing_out_runbook(live, "times-out")
    subscription = connector.run("runbook_stopped_by_system.subscribe", live.fields(), {
        "runbooks": [key], "target_url": server.url + "/monitor"})

    stopped = connector.run("runbook_action.execute", live.fields(), {"runbook_action": key})
    wait_until(lambda: _received(server, "/monitor"), timeout=ACT_WITHIN, interval=0.1, what="the stop delivery")

    delivered = _received(server, "/monitor")[0]
    output = connector.run("runbook_stopped_by_system.receive", live.fields(), {
        "secret": subscription["secret"], "headers": delivered["headers"], "body": delivered["body"]})
    assert_matches_declared(output, declared_output("triggers", "runbook_stopped_by_system"))
    assert (output["stop_reason"], output["job"]["uuid"], output["runbook"]["key"]) == ("run_timeout", stopped["job"]["uuid"], key)
    assert output["message"] and output["step"] == {"order": 1, "title": "Confirm with the team"}

    patched = live.api("PATCH", f"/runbooks/{key}", json={"max_duration_seconds": 3600})  # so the abort below cannot lose a race
    assert patched.status_code == 200, patched.text
    aborted = connector.run("runbook_action.execute", live.fields(), {"runbook_action": key})
    answer = live.api("POST", f"/jobs/{aborted['job']['uuid']}/abort", json={"reason": "not needed"})
    assert (answer.status_code, answer.json()["status"]) == (200, "cancelled")
    log = live.api("GET", f"/hooks/{subscription['id']}/deliveries").json()["items"]
    assert [d["event_type"] for d in log] == ["job.stopped_by_system"], "a person's abort was delivered to the monitor"
    assert len(_received(server, "/monitor")) == 1


# --- e. the polling fallback ---------------------------------------------------------------------------------------

def test_polling_returns_the_stop_once_then_nothing_new(live: LiveRunner) -> None:
    key = _timing_out_runbook(live, "polled")
    stopped = connector.run("runbook_action.execute", live.fields(), {"runbook_action": key})
    assert _ended(live, stopped["job"]["uuid"])["status"] == "stopped"

    first = connector.run("runbook_stopped_by_system.poll", live.fields(), {"runbooks": [key]})
    assert [item["job"]["uuid"] for item in first["items"]] == [stopped["job"]["uuid"]]
    assert_matches_declared(first["items"][0], declared_output("triggers", "runbook_stopped_by_system"))
    assert first["items"][0]["stop_reason"] == "run_timeout" and first["cursor"]

    again = connector.run("runbook_stopped_by_system.poll", live.fields(), {"runbooks": [key], "cursor": first["cursor"]})
    assert again["items"] == []


# --- f. the connector from a shell ----------------------------------------------------------------------------------

def _cli(runner: LiveRunner, *argv: str) -> Any:
    """Run ``runbook-manager connector …`` with the connection in RUNBOOK_MANAGER_CONNECTOR_* variables."""
    env = {"RUNBOOK_MANAGER_CONNECTOR_ENVIRONMENT": runner.environment, "RUNBOOK_MANAGER_CONNECTOR_BASE_URL": runner.url,
           "RUNBOOK_MANAGER_CONNECTOR_TOKEN": runner.token, "RUNBOOK_MANAGER_CONNECTOR_WORKSPACE": "acme"}
    return CliRunner(env=env).invoke(main, ["connector", *argv])


def _printed(result: Any) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _as_printed(value: Any) -> Any:
    """A handler's output as the CLI prints it (JSON, datetimes as text)."""
    return json.loads(json.dumps(value, default=str))


def test_cli_test_prints_the_connection_test(live: LiveRunner) -> None:
    assert _printed(_cli(live, "test")) == _as_printed(connector.run("connection.test", live.fields()))


def test_cli_invoke_prints_what_the_action_returns(live: LiveRunner, server: CountingServer) -> None:
    key = _http_runbook(live, server, "cli-invoked")
    printed = _printed(_cli(live, "invoke", key, "--param", "service=billing", "--wait", "--timeout", "30",
                            "--idempotency-key", "cli-invoke-1"))
    returned = connector.run("runbook_action.execute", live.fields(), {
        "runbook_action": key, "parameters": {"service": "billing"}, "wait": True, "timeout_seconds": 30,
        "idempotency_key": "cli-invoke-1"})
    assert printed == _as_printed(returned)
    assert (printed["finished"], printed["status"]) == (True, "succeeded")


def test_cli_get_job_prints_what_the_action_returns(live: LiveRunner, server: CountingServer) -> None:
    key = _http_runbook(live, server, "cli-read")
    job_uuid = connector.run("runbook_action.execute", live.fields(), {
        "runbook_action": key, "parameters": {"service": "search"}, "wait": True})["job"]["uuid"]
    printed = _printed(_cli(live, "get-job", job_uuid))
    assert printed == _as_printed(connector.run("get_job.execute", live.fields(), {"job_uuid": job_uuid}))
    assert printed["job"]["uuid"] == job_uuid and printed["steps"][0]["status"] == "done"


def test_cli_poll_prints_what_the_trigger_returns(live: LiveRunner, server: CountingServer) -> None:
    key = _http_runbook(live, server, "cli-polled")
    for service in ("a", "b"):
        # Waited for: a job still writing events between the two polls below would move the second one's cursor further.
        connector.run("runbook_action.execute", live.fields(), {"runbook_action": key, "parameters": {"service": service}, "wait": True})
    printed = _printed(_cli(live, "poll", "runbook_action", "--runbook", key))
    assert printed == _as_printed(connector.run("runbook_action.poll", live.fields(), {"runbook": key}))
    assert [item["parameters"] for item in printed["items"]] == [{"service": "a"}, {"service": "b"}]
    later = _printed(_cli(live, "poll", "runbook_action", "--runbook", key, "--cursor", printed["cursor"]))
    assert later["items"] == []


def test_cli_subscribe_and_unsubscribe_print_what_the_handlers_return(live: LiveRunner, server: CountingServer) -> None:
    key = _timing_out_runbook(live, "cli-monitored")
    target = server.url + "/cli-monitor"
    printed = _printed(_cli(live, "subscribe", "runbook_stopped_by_system", "--target-url", target, "--runbook", key))
    returned = connector.run("runbook_stopped_by_system.subscribe", live.fields(), {"runbooks": [key], "target_url": target})
    assert set(printed) == set(returned) and printed["runbooks"] == returned["runbooks"] == [key]
    assert printed["secret"].startswith("whsec_") and printed["id"] != returned["id"]
    stored = live.api("GET", f"/hooks/{printed['id']}").json()
    assert (stored["events"], stored["runbooks"], stored["target_url"]) == (["job.stopped_by_system"], [key], target)

    unsubscribed = _printed(_cli(live, "unsubscribe", printed["id"]))
    assert unsubscribed == _as_printed(connector.run("subscription.unsubscribe", live.fields(), {"id": printed["id"]}))
    assert unsubscribed == {"id": printed["id"], "unsubscribed": True}
    assert live.api("GET", f"/hooks/{printed['id']}").status_code == 404


@pytest.mark.parametrize(("argv", "method", "path", "body"), [
    (["invoke", "no-such-runbook"], "POST", "/runbooks/no-such-runbook/jobs", {"parameters": {}}),
    (["get-job", "00000000-0000-4000-8000-000000000000"], "GET", "/jobs/00000000-0000-4000-8000-000000000000", None),
    (["poll", "runbook_stopped_by_system", "--runbook", "no-such-runbook"], "GET", "/events",
     {"type": "job.stopped_by_system", "runbooks": "no-such-runbook"}),
], ids=["invoke-unknown-runbook", "get-unknown-job", "poll-unknown-runbook"])
def test_cli_connector_error_exits_non_zero_with_the_runners_detail(live: LiveRunner, argv: list[str], method: str, path: str,
                                                                    body: dict[str, Any] | None) -> None:
    direct = live.api(method, path, **({"json": body} if method == "POST" else {"params": body}))
    assert direct.status_code in (404, 422), direct.text

    result = _cli(live, *argv)

    assert result.exit_code != 0
    assert direct.json()["detail"] in result.output
    assert result.stdout == "", "an error must not print output a flow could mistake for a result"
