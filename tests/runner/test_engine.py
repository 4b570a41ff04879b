"""The job engine end to end: the state table, step actions, retries, system stops, child runbooks,
timeline and summary, events, and recovery from a worker that died mid-step."""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from runner import create_app
from runner.engine import JobWorker
from runner.engine.http import perform
from runner.engine.machine import Machine, NeedsCall
from runner.engine.states import TERMINAL, TRANSITIONS, JobStatus, check_transition
from runner.errors import IllegalTransition
from runner.models import Event, Job
from runner.runtime import Runtime
from tests.conftest import Api, problem
from webhooks.outbound import OutboundPolicy

from .helpers import create_runbook

SVC_PARAMS = {"type": "object", "properties": {"svc": {"type": "string"}}, "required": ["svc"]}
CHILD_PARAMS = {"type": "object", "properties": {"x": {"type": "string"}}, "required": ["x"]}


# --- fixtures and builders ----------------------------------------------------------------------------


@pytest.fixture
def runtime_with(settings, clock) -> Iterator[Any]:
    """Another Runtime on the test database, with some settings changed: ``runtime_with(max_call_depth=1)``."""
    built: list[Runtime] = []

    def build(**overrides: Any) -> Runtime:
        runtime = Runtime.from_settings(dataclasses.replace(settings, **overrides), clock=clock)
        built.append(runtime)
        return runtime

    yield build
    for runtime in built:
        runtime.db.dispose()


def api_on(runtime: Runtime, api: Api) -> Api:
    """The same token, sent to an app built on ``runtime``."""
    return Api(create_app(runtime=runtime).test_client(), api.slug, api.token)


def manual(title: str = "Confirm with the team", **fields: Any) -> dict[str, Any]:
    return {"title": title, **fields}


def http(url: str, title: str = "Call the service", *, step: dict[str, Any] | None = None, **action: Any) -> dict[str, Any]:
    return {"title": title, **(step or {}), "action": {"type": "http", "url": url, **action}}


def calls(runbook: str, title: str = "Run the child runbook", **action: Any) -> dict[str, Any]:
    return {"title": title, "action": {"type": "runbook", "runbook": runbook, **action}}


def publish(api: Api, title: str, steps: list[dict[str, Any]], **fields: Any) -> str:
    """Create a published, callable runbook and return its key."""
    return create_runbook(api, title, status="published", steps=steps, **{"callable": True, **fields})["key"]


def start(api: Api, key: str, parameters: dict[str, Any] | None = None) -> str:
    response = api.post(f"/runbooks/{key}/jobs", json={"parameters": parameters or {}})
    assert response.status_code == 202, response.get_json()
    return response.get_json()["job"]["uuid"]


def job(api: Api, job_uuid: str) -> dict[str, Any]:
    response = api.get(f"/jobs/{job_uuid}")
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def events(api: Api, job_uuid: str, *, page: int = 100) -> list[dict[str, Any]]:
    """Every event of a job, following the ``after`` cursor."""
    items: list[dict[str, Any]] = []
    after = 0
    while True:
        response = api.get(f"/jobs/{job_uuid}/events", query_string={"after": after, "limit": page})
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        items += body["items"]
        if not body["items"]:
            return items
        after = body["next_after"]


def of_type(items: list[dict[str, Any]], type_: str) -> list[dict[str, Any]]:
    return [e for e in items if e["type"] == type_]


def step_done(api: Api, job_uuid: str, order: int, note: str | None = None) -> None:
    response = api.post(f"/jobs/{job_uuid}/steps/{order}/done", json={"note": note})
    assert response.status_code == 200, response.get_json()


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


# --- 1. the state table ---------------------------------------------------------------------------------


@pytest.mark.parametrize("current", list(JobStatus))
@pytest.mark.parametrize("target", list(JobStatus))
def test_check_transition_refuses_exactly_the_moves_missing_from_the_table(current, target):
    if target in TRANSITIONS[current]:
        check_transition(current, target, job_uuid="j-1")
    else:
        with pytest.raises(IllegalTransition, match=f"j-1 is {current.value}"):
            check_transition(current, target, job_uuid="j-1")


@pytest.mark.parametrize("status", list(JobStatus))
def test_terminal_states_have_no_exits_and_others_do(status):
    assert status in TRANSITIONS
    assert status.terminal is (status in TERMINAL)
    assert bool(TRANSITIONS[status]) is not status.terminal


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (JobStatus.QUEUED, JobStatus.RUNNING),
        (JobStatus.RUNNING, JobStatus.PAUSED),
        (JobStatus.PAUSED, JobStatus.RUNNING),
        (JobStatus.RUNNING, JobStatus.WAITING),
        (JobStatus.WAITING, JobStatus.RUNNING),
        (JobStatus.RUNNING, JobStatus.SUCCEEDED),
        (JobStatus.RUNNING, JobStatus.FAILED),
        (JobStatus.WAITING, JobStatus.FAILED),
        (JobStatus.RUNNING, JobStatus.CANCELLED),
        (JobStatus.WAITING, JobStatus.CANCELLED),
        (JobStatus.PAUSED, JobStatus.CANCELLED),
        (JobStatus.QUEUED, JobStatus.STOPPED),
        (JobStatus.RUNNING, JobStatus.STOPPED),
        (JobStatus.WAITING, JobStatus.STOPPED),
        (JobStatus.PAUSED, JobStatus.STOPPED),
    ],
)
def test_the_table_allows_every_move_the_design_names(current, target):
    assert target in TRANSITIONS[current]


# --- 2. http steps ----------------------------------------------------------------------------------------


def test_http_step_substitutes_parameters_into_url_headers_and_body(api, server, worker):
    params = {"type": "object", "properties": {"svc": {"type": "string"}, "count": {"type": "integer"}}}
    body = {"count": "{{ params.count }}", "note": "restart {{ params.svc }} now", "tags": ["{{ params.svc }}"],
            "text": "n={{ params.count }}"}
    key = publish(api, "Restart a service", [http(server.url + "/svc/{{ params.svc }}?n={{ params.count }}", method="POST",
                                                  headers={"X-Service": "{{ params.svc }}"}, body=body)], parameters=params)

    uuid = start(api, key, {"svc": "db", "count": 3})
    worker.run_until_idle()

    assert job(api, uuid)["status"] == "succeeded"
    [sent] = server.requests
    assert (sent["method"], sent["path"]) == ("POST", "/svc/db?n=3")
    assert sent["headers"]["X-Service"] == "db"
    assert sent["headers"]["Content-Type"] == "application/json"
    assert json.loads(sent["body"]) == {"count": 3, "note": "restart db now", "tags": ["db"], "text": "n=3"}


def test_step_text_is_rendered_with_parameters_in_the_job(api):
    step = manual("Restart {{ params.svc }}", description="Drain {{ params.svc }} first", verification="{{ params.svc }} answers",
                  rollback_note="Start {{ params.svc }} again")
    key = publish(api, "Restart a service", [step], parameters=SVC_PARAMS)

    [shown] = job(api, start(api, key, {"svc": "db"}))["steps"]

    assert (shown["title"], shown["description"], shown["verification"], shown["rollback_note"]) == (
        "Restart db", "Drain db first", "db answers", "Start db again")


def test_http_step_retries_with_backoff_until_it_succeeds(api, server, worker, clock):
    server.script("/flaky", 500, 500, 200)
    key = publish(api, "Ping", [http(server.url + "/flaky", retries=2, backoff_seconds=10, backoff_factor=2)])
    uuid = start(api, key)

    worker.run_until_idle()
    assert server.hits["/flaky"] == 1
    clock.advance(8)  # less than the first backoff (10 s ± 10 %)
    worker.run_until_idle()
    assert server.hits["/flaky"] == 1
    clock.advance(4)
    worker.run_until_idle()
    assert server.hits["/flaky"] == 2
    clock.advance(23)  # past the second backoff (20 s ± 10 %)
    worker.run_until_idle()

    done = job(api, uuid)
    assert server.hits["/flaky"] == 3
    assert done["status"] == "succeeded"
    assert (done["steps"][0]["status"], done["steps"][0]["attempts"], done["steps"][0]["output"]["status"]) == ("done", 3, 200)
    assert [e["data"]["attempt"] for e in of_type(events(api, uuid), "step.retrying")] == [1, 2]


@pytest.mark.parametrize(
    ("answers", "delay", "action", "hits", "says"),
    [
        ((500, 500), 0, {"retries": 1}, 2, ["HTTP 500", "after 2 attempts"]),
        ((404, 200), 0, {"retries": 3}, 1, ["HTTP 404", "after 1 attempt:"]),
        ((), 0, {"retries": 2, "expected_status": [201]}, 1, ["HTTP 200, expected 201", "after 1 attempt:"]),
        ((), 2, {"retries": 1, "timeout_seconds": 0.5}, 2, ["timed out after 0.5s", "after 2 attempts"]),
    ],
    ids=["server_error_on_every_attempt", "not_found_is_not_retried", "unexpected_success_status", "timeout_on_every_attempt"],
)
def test_http_step_that_keeps_failing_stops_the_job(api, server, worker, clock, answers, delay, action, hits, says):
    server.script("/svc", *answers)
    server.delays["/svc"] = delay
    key = publish(api, "Ping", [http(server.url + "/svc", "Ping the service", backoff_seconds=1, **action)])
    uuid = start(api, key)

    worker.run_until_idle()
    clock.advance(60)
    worker.run_until_idle()

    stopped = job(api, uuid)
    assert server.hits["/svc"] == hits
    assert (stopped["status"], stopped["stop_reason"], stopped["ended_by"]) == ("stopped", "step_failed", "system")
    assert (stopped["steps"][0]["status"], stopped["steps"][0]["attempts"]) == ("failed", hits)
    assert "Ping the service" in stopped["message"] and "127.0.0.1" in stopped["message"]
    assert all(fragment in stopped["message"] for fragment in says), stopped["message"]


def test_system_stop_event_carries_the_structured_stop_payload(api, server, worker, clock):
    server.script("/down", 500)
    key = publish(api, "Ping", [manual("Announce"), http(server.url + "/down", "Ping the service")])
    uuid = start(api, key)
    worker.run_until_idle()
    step_done(api, uuid, 1)
    worker.run_until_idle()

    stopped = job(api, uuid)
    [event] = of_type(events(api, uuid), "job.stopped_by_system")
    data = event["data"]
    assert data["stop_reason"] == "step_failed"
    assert data["message"] == stopped["message"]
    assert at(data["stopped_at"]) == clock.now()
    assert data["step"] == {"order": 2, "title": "Ping the service"}
    assert data["environment"] == "eu-qa"
    assert (data["job"]["uuid"], data["job"]["parent_job_uuid"], data["job"]["root_job_uuid"], data["job"]["depth"]) == (uuid, None, uuid, 0)
    assert (data["runbook"]["key"], data["runbook"]["version"]) == (key, 1)
    assert of_type(events(api, uuid), "job.failed") == []


def test_http_step_honours_retry_after(api, server, worker, clock):
    server.script("/busy", (503, {"Retry-After": "7"}), 200)
    key = publish(api, "Ping", [http(server.url + "/busy", retries=1, backoff_seconds=1)])
    uuid = start(api, key)

    worker.run_until_idle()
    clock.advance(5)  # well past the 1 s backoff, before the 7 s the server asked for
    worker.run_until_idle()
    assert server.hits["/busy"] == 1
    clock.advance(2.5)
    worker.run_until_idle()

    assert server.hits["/busy"] == 2
    assert job(api, uuid)["status"] == "succeeded"
    [retrying] = of_type(events(api, uuid), "step.retrying")
    assert retrying["data"]["retry_in_seconds"] == 7


def test_http_step_to_a_loopback_address_is_refused_without_an_allowlist(api, server, runtime_with):
    strict = JobWorker(runtime_with(outbound_allowlist=""), worker_id="strict-worker", threads=1)
    key = publish(api, "Ping", [http(server.url + "/x", retries=3)])
    uuid = start(api, key)

    strict.run_until_idle()

    stopped = job(api, uuid)
    assert (stopped["status"], stopped["stop_reason"], stopped["ended_by"]) == ("stopped", "outbound_refused", "system")
    assert "127.0.0.1" in stopped["message"] and "loopback" in stopped["message"]
    assert stopped["steps"][0]["status"] == "failed"
    assert server.hits == {}


def test_http_step_with_a_malformed_url_stops_the_job_instead_of_retrying_forever(api, worker):
    key = publish(api, "Ping", [http("http://[::1/x", step={"idempotent": True}, retries=3)])
    uuid = start(api, key)

    worker.run_until_idle()

    stopped = job(api, uuid)
    assert (stopped["status"], stopped["stop_reason"]) == ("stopped", "outbound_refused")
    assert "malformed" in stopped["message"]


# --- 3. wait steps -----------------------------------------------------------------------------------------


def test_wait_step_waits_for_the_timer_then_continues(api, worker, clock):
    key = publish(api, "Let DNS propagate", [{"title": "Wait for DNS", "action": {"type": "wait", "seconds": 30}}, manual()])
    uuid = start(api, key)

    worker.run_until_idle()
    clock.advance(29)
    worker.run_until_idle()
    waiting = job(api, uuid)
    clock.advance(2)
    worker.run_until_idle()

    assert (waiting["status"], waiting["waiting_for"], waiting["steps"][0]["status"]) == ("waiting", "timer", "waiting")
    after = job(api, uuid)
    assert (after["steps"][0]["status"], after["current_step"], after["waiting_for"]) == ("done", 2, "operator")
    assert after["steps"][0]["output"] == {"waited_seconds": 30}


# --- 4. system stops ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("runbook_fields", "step_fields", "limit", "reason", "says", "step_status"),
    [
        ({"max_duration_seconds": 600}, {}, 600, "run_timeout", "max_duration of 600s", "cancelled"),
        ({}, {"timeout_seconds": 120}, 120, "step_timeout", "timeout of 120s", "failed"),
    ],
    ids=["run_timeout", "step_timeout"],
)
def test_job_running_past_its_time_limit_is_stopped(api, worker, clock, runbook_fields, step_fields, limit, reason, says, step_status):
    key = publish(api, "Slow", [manual("Wait for the vendor", **step_fields)], **runbook_fields)
    uuid = start(api, key)

    worker.run_until_idle()
    clock.advance(limit - 1)
    worker.run_until_idle()
    assert job(api, uuid)["status"] == "waiting"
    clock.advance(2)
    worker.run_until_idle()

    stopped = job(api, uuid)
    assert (stopped["status"], stopped["stop_reason"], stopped["ended_by"]) == ("stopped", reason, "system")
    assert says in stopped["message"] and "Wait for the vendor" in stopped["message"]
    assert stopped["steps"][0]["status"] == step_status


def test_runbook_archived_while_the_job_is_queued_stops_it(api, server, worker):
    key = publish(api, "Ping", [http(server.url + "/ping")])
    uuid = start(api, key)
    assert api.post(f"/runbooks/{key}/archive").status_code == 200

    worker.run_until_idle()

    stopped = job(api, uuid)
    assert (stopped["status"], stopped["stop_reason"], stopped["ended_by"]) == ("stopped", "runbook_archived", "system")
    assert key in stopped["message"] and "archived" in stopped["message"]
    assert stopped["steps"][0]["status"] == "pending"
    assert server.hits == {}


def test_step_running_past_its_estimate_emits_one_overdue_event(api, worker, clock):
    key = publish(api, "Slow", [manual("Wait for the vendor", est_minutes=2)])
    uuid = start(api, key)

    worker.run_until_idle()
    clock.advance(minutes=2.9)  # past est_minutes, not yet past est_minutes × 1.5
    worker.run_until_idle()
    before = job(api, uuid)["steps"][0]["overdue"], of_type(events(api, uuid), "job.step_overdue")
    clock.advance(minutes=0.2)
    worker.run_until_idle()
    clock.advance(minutes=30)
    worker.run_until_idle()

    assert before == (False, [])
    [overdue] = of_type(events(api, uuid), "job.step_overdue")
    assert (overdue["data"]["step"]["order"], overdue["data"]["est_minutes"]) == (1, 2)
    assert job(api, uuid)["steps"][0]["overdue"] is True


# --- 5. child runbooks -------------------------------------------------------------------------------------


def child_and_parent(api: Api, child_steps: list[dict[str, Any]], *, after: list[dict[str, Any]] | None = None,
                     before: list[dict[str, Any]] | None = None, **action: Any) -> tuple[str, str]:
    """A child taking ``x`` and a parent passing its ``svc`` as ``x``; return (child key, parent key)."""
    child = publish(api, "Child", child_steps, parameters=CHILD_PARAMS)
    parent = publish(api, "Parent", [*(before or []), calls(child, parameters={"x": "{{ params.svc }}"}, **action), *(after or [])],
                     parameters=SVC_PARAMS)
    return child, parent


def child_of(api: Api, parent_uuid: str, order: int = 1) -> str:
    return job(api, parent_uuid)["steps"][order - 1]["output"]["child_job_uuid"]


def test_child_job_records_its_lineage_and_mapped_parameters(api, server, worker):
    child_key, parent_key = child_and_parent(api, [manual("Child work {{ params.x }}")])
    parent = start(api, parent_key, {"svc": "db"})

    worker.run_until_idle()

    child = job(api, child_of(api, parent))
    assert (child["parent_job_uuid"], child["root_job_uuid"], child["depth"], child["triggered_by"]) == (parent, parent, 1, "runbook")
    assert child["runbook"]["key"] == child_key
    assert child["parameters"] == {"x": "db"}
    assert child["steps"][0]["title"] == "Child work db"
    assert job(api, parent)["summary"]["children"] == [child["uuid"]]


def test_child_success_lets_the_parent_continue(api, server, worker):
    _, parent_key = child_and_parent(api, [http(server.url + "/child/{{ params.x }}")], after=[manual("Confirm")])
    parent = start(api, parent_key, {"svc": "db"})

    worker.run_until_idle()

    after = job(api, parent)
    assert server.hits["/child/db"] == 1
    assert job(api, child_of(api, parent))["status"] == "succeeded"
    assert (after["status"], after["current_step"], after["waiting_for"]) == ("waiting", 2, "operator")
    assert (after["steps"][0]["status"], after["steps"][0]["output"]["child_status"]) == ("done", "succeeded")


def test_child_stopped_by_the_system_stops_the_parent_naming_the_child(api, server, worker):
    server.script("/boom", 500)
    child_key, parent_key = child_and_parent(api, [http(server.url + "/boom")], after=[manual("Confirm")])
    parent = start(api, parent_key, {"svc": "db"})

    worker.run_until_idle()

    child_uuid = child_of(api, parent)
    stopped = job(api, parent)
    assert job(api, child_uuid)["stop_reason"] == "step_failed"
    assert (stopped["status"], stopped["stop_reason"], stopped["ended_by"]) == ("stopped", "child_stopped", "system")
    assert child_key in stopped["message"] and child_uuid in stopped["message"]
    assert stopped["steps"][0]["status"] == "failed"
    assert stopped["steps"][1]["status"] == "pending"


def test_child_failed_by_a_person_stops_the_parent(api, worker):
    child_key, parent_key = child_and_parent(api, [manual("Child work")])
    parent = start(api, parent_key, {"svc": "db"})
    worker.run_until_idle()
    child_uuid = child_of(api, parent)

    response = api.post(f"/jobs/{child_uuid}/steps/1/fail", json={"note": "disk full"})
    assert response.status_code == 200, response.get_json()
    worker.run_until_idle()

    stopped = job(api, parent)
    assert (stopped["status"], stopped["stop_reason"], stopped["ended_by"]) == ("stopped", "child_failed", "system")
    assert child_key in stopped["message"] and child_uuid in stopped["message"]
    assert job(api, child_uuid)["status"] == "failed"


def test_child_without_wait_lets_the_parent_continue_at_once(api, worker):
    _, parent_key = child_and_parent(api, [manual("Child work")], after=[manual("Confirm")], wait=False)
    parent = start(api, parent_key, {"svc": "db"})

    worker.run_until_idle()

    after = job(api, parent)
    assert job(api, child_of(api, parent))["status"] == "waiting"
    assert (after["current_step"], after["waiting_for"]) == (2, "operator")
    assert (after["steps"][0]["status"], after["steps"][0]["output"]["waited"]) == ("done", False)


@pytest.mark.parametrize("driven_by", ["worker", "wait"])
def test_a_child_that_ends_in_the_transaction_that_created_it_wakes_its_parent(api, server, worker, driven_by):
    """The child only starts a grandchild and ends at once; its parent, waiting for it, goes on to its next step."""
    grandchild = publish(api, "Grandchild", [manual("Grandchild work")])
    child = publish(api, "Child", [calls(grandchild, wait=False)])
    parent = publish(api, "Parent", [http(server.url + "/ok"), calls(child), manual("Confirm")])
    if driven_by == "wait":
        answer = api.post(f"/runbooks/{parent}/jobs", json={"wait": 5})
        assert answer.status_code == 202, answer.get_json()
        parent_uuid = answer.get_json()["job"]["uuid"]
    else:
        parent_uuid = start(api, parent)
    worker.run_until_idle()

    after = job(api, parent_uuid)
    assert job(api, child_of(api, parent_uuid, 2))["status"] == "succeeded"
    assert (after["status"], after["current_step"], after["waiting_for"]) == ("waiting", 3, "operator")


def test_child_runs_the_version_pinned_when_the_parent_started(api, worker):
    child_key, parent_key = child_and_parent(api, [manual("Old child step")], before=[manual("Go")])
    parent = start(api, parent_key, {"svc": "db"})
    worker.run_until_idle()
    edited = api.patch(f"/runbooks/{child_key}", json={"steps": [{"title": "New child step"}]})
    assert edited.get_json()["version"] == 2

    step_done(api, parent, 1)
    worker.run_until_idle()

    child = job(api, child_of(api, parent, 2))
    assert child["runbook"]["version"] == 1
    assert child["steps"][0]["title"] == "Old child step"
    assert job(api, start(api, child_key, {"x": "db"}))["runbook"]["version"] == 2


def test_call_cycle_is_refused_before_any_job_exists(api):
    b = publish(api, "B", [manual()])
    a = publish(api, "A", [calls(b)])
    assert api.patch(f"/runbooks/{b}", json={"steps": [calls(a)]}).status_code == 200

    refused = api.post(f"/runbooks/{a}/jobs", json={"parameters": {}})

    assert refused.status_code == 422
    assert f"cycle: {a} → {b} → {a}" in problem(refused)["detail"]
    assert api.get("/jobs").get_json()["items"] == []


def test_call_deeper_than_max_call_depth_is_refused(api, runtime_with):
    shallow = api_on(runtime_with(max_call_depth=1), api)
    c = publish(api, "C", [manual()])
    b = publish(api, "B", [calls(c)])
    a = publish(api, "A", [calls(b)])

    refused = shallow.post(f"/runbooks/{a}/jobs", json={"parameters": {}})

    assert refused.status_code == 422
    detail = problem(refused)["detail"]
    assert "maximum of 1" in detail and f"{a} → {b} → {c}" in detail
    assert shallow.get("/jobs").get_json()["items"] == []


def test_call_within_max_call_depth_is_allowed(api, runtime_with):
    shallow = api_on(runtime_with(max_call_depth=1), api)
    b = publish(api, "B", [manual()])
    a = publish(api, "A", [calls(b)])

    assert shallow.post(f"/runbooks/{a}/jobs", json={"parameters": {}}).status_code == 202


def test_caller_not_in_allowed_callers_is_refused_naming_both(api):
    other = publish(api, "Other", [manual()])
    child = publish(api, "Child", [manual()], allowed_callers=[other])
    parent = publish(api, "Parent", [calls(child)])

    refused = api.post(f"/runbooks/{parent}/jobs", json={"parameters": {}})

    assert refused.status_code == 422
    detail = problem(refused)["detail"]
    assert child in detail and parent in detail and other in detail
    assert api.get("/jobs").get_json()["items"] == []


def test_child_stop_reaches_the_waiting_parent_after_a_restart(api, server, rt, settings, clock, worker, runtime_with):
    server.script("/boom", 500)
    wait = {"title": "Let DNS settle", "action": {"type": "wait", "seconds": 60}}
    child_key, parent_key = child_and_parent(api, [wait, http(server.url + "/boom")])
    parent = start(api, parent_key, {"svc": "db"})
    worker.run_until_idle()
    child_uuid = child_of(api, parent)
    assert job(api, child_uuid)["waiting_for"] == "timer"
    rt.db.dispose()

    fresh = runtime_with()
    clock.advance(61)
    JobWorker(fresh, worker_id="fresh-worker", threads=1).run_until_idle()

    stopped = job(api_on(fresh, api), parent)
    assert (stopped["status"], stopped["stop_reason"]) == ("stopped", "child_stopped")
    assert child_key in stopped["message"] and child_uuid in stopped["message"]
    assert server.hits["/boom"] == 1


# --- 6. timeline and summary -------------------------------------------------------------------------------


def test_each_step_records_when_who_how_and_what(api, server, worker, clock):
    key = publish(api, "Ping", [manual("Announce"), http(server.url + "/ping")])
    uuid = start(api, key)
    started = clock.now()
    worker.run_until_idle()
    clock.advance(60)

    step_done(api, uuid, 1, "announced in #ops")
    worker.run_until_idle()

    first, second = job(api, uuid)["steps"]
    assert (first["status"], first["actor"], first["note"]) == ("done", "olivia", "announced in #ops")
    assert (at(first["started_at"]), at(first["completed_at"])) == (started, started + timedelta(seconds=60))
    assert (second["status"], second["actor"], second["output"]["status"], second["attempts"]) == ("done", "system", 200, 1)
    assert at(second["started_at"]) == at(second["completed_at"]) == started + timedelta(seconds=60)


def test_summary_compares_actual_with_estimated_minutes(api, worker, clock):
    key = publish(api, "Two steps", [manual("First", est_minutes=5), manual("Second", est_minutes=10)])
    uuid = start(api, key)
    worker.run_until_idle()

    clock.advance(minutes=3)
    step_done(api, uuid, 1)
    clock.advance(minutes=12)
    step_done(api, uuid, 2)

    done = job(api, uuid)
    assert done["status"] == "succeeded"
    assert [s["actual_minutes"] for s in done["steps"]] == [3.0, 12.0]
    assert [s["est_minutes"] for s in done["steps"]] == [5, 10]
    assert (done["summary"]["est_minutes"], done["summary"]["actual_minutes"], done["summary"]["eta"]) == (15, 15.0, None)


@pytest.mark.parametrize(("elapsed", "remaining"), [(0, 15), (2, 13), (7, 10)])
def test_eta_is_now_plus_the_remaining_estimates(api, worker, clock, elapsed, remaining):
    key = publish(api, "Two steps", [manual("First", est_minutes=5), manual("Second", est_minutes=10)])
    uuid = start(api, key)
    worker.run_until_idle()

    clock.advance(minutes=elapsed)

    assert at(job(api, uuid)["summary"]["eta"]) == clock.now() + timedelta(minutes=remaining)


def test_stopped_job_lists_rollback_notes_of_done_steps_newest_first(api, server, worker, clock):
    server.script("/boom", 500)
    steps = [manual("Drain", rollback_note="Undrain"), manual("Patch", rollback_note="Unpatch"), manual("Check"),
             manual("Skipped", rollback_note="Never done"), http(server.url + "/boom", "Deploy", step={"rollback_note": "Not reached"})]
    key = publish(api, "Deploy", steps)
    uuid = start(api, key)
    worker.run_until_idle()
    for order in (1, 2, 3):
        clock.advance(60)
        step_done(api, uuid, order)
    assert api.post(f"/jobs/{uuid}/steps/4/skip", json={"reason": "not needed"}).status_code == 200

    worker.run_until_idle()

    stopped = job(api, uuid)
    assert stopped["status"] == "stopped"
    assert stopped["summary"]["rollback_notes"] == [
        {"order": 2, "title": "Patch", "rollback_note": "Unpatch"},
        {"order": 1, "title": "Drain", "rollback_note": "Undrain"},
    ]


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("steps/1/done", {}),
        ("steps/1/skip", {"reason": "late"}),
        ("steps/1/fail", {"note": "late"}),
        ("steps/1/approve", {}),
        ("pause", None),
        ("resume", None),
        ("abort", {}),
    ],
)
def test_finished_job_is_sealed_against_operator_actions(api, worker, path, payload):
    key = publish(api, "One step", [manual("Only")])
    uuid = start(api, key)
    worker.run_until_idle()
    step_done(api, uuid, 1)
    sealed = job(api, uuid)
    before = events(api, uuid)

    response = api.post(f"/jobs/{uuid}/{path}", json=payload)

    assert response.status_code == 409, response.get_json()
    assert "succeeded" in problem(response)["detail"]
    assert events(api, uuid) == before
    assert job(api, uuid) == sealed


# --- 7. events -----------------------------------------------------------------------------------------------


def test_invocation_refused_for_invalid_parameters_writes_no_event(api, rt):
    key = publish(api, "Restart a service", [manual()], parameters=SVC_PARAMS)

    refused = api.post(f"/runbooks/{key}/jobs", json={"parameters": {"svc": 3}})

    assert refused.status_code == 422
    assert problem(refused)["errors"][0]["field"] == "parameters.svc"
    with rt.db.read() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 0
        assert session.scalar(select(func.count()).select_from(Job)) == 0


def test_job_events_are_numbered_without_gaps_across_a_long_run(api, server, worker, clock):
    server.script("/flaky", 500, 200)
    steps = [manual("Announce"), http(server.url + "/flaky", retries=1, backoff_seconds=1),
             {"title": "Settle", "action": {"type": "wait", "seconds": 30}}, manual("Check"), http(server.url + "/done")]
    key = publish(api, "Long", steps)
    uuid = start(api, key)

    worker.run_until_idle()
    step_done(api, uuid, 1)
    worker.run_until_idle()
    clock.advance(2)
    worker.run_until_idle()
    clock.advance(31)
    worker.run_until_idle()
    pause = api.post(f"/jobs/{uuid}/pause")
    assert pause.status_code == 200
    assert api.post(f"/jobs/{uuid}/resume").status_code == 200
    step_done(api, uuid, 4)
    worker.run_until_idle()

    items = events(api, uuid, page=7)
    assert job(api, uuid)["status"] == "succeeded"
    assert [e["seq"] for e in items] == list(range(1, len(items) + 1))
    assert len(items) > 20
    assert items[0]["type"] == "job.created" and items[-1]["type"] == "job.succeeded"
    assert len(of_type(items, "step.completed")) == 5
    assert {"job.started", "job.waiting", "job.running", "step.retrying", "job.pause_requested", "job.pause_withdrawn"} <= {
        e["type"] for e in items}


# --- 8. crash recovery ----------------------------------------------------------------------------------------


def crash_during(rt: Runtime, job_uuid: str, order: int) -> NeedsCall:
    """Drive a job like runner.engine.driver.drive until step ``order`` is in flight, send that request, then die."""
    policy = OutboundPolicy.from_setting(rt.settings.outbound_allowlist)
    pending = result = None
    while True:
        with rt.db.write() as session:
            machine = Machine(rt, session, session.scalar(select(Job).where(Job.uuid == job_uuid)))
            if pending is not None:
                machine.apply_result(pending, result)
            need = machine.run()
            assert isinstance(need, NeedsCall), need
            machine.begin_attempt(need)
        result = perform(need.call, policy)
        if need.order == order:
            return need
        pending = need


def crashed_job(api: Api, rt: Runtime, server, *, idempotent: bool) -> tuple[str, NeedsCall]:
    key = publish(api, "Two calls", [http(server.url + "/a", "Call A"),
                                     http(server.url + "/b", "Call B", step={"idempotent": idempotent}, timeout_seconds=1)])
    uuid = start(api, key)
    return uuid, crash_during(rt, uuid, 2)


def lease_end(rt: Runtime, need: NeedsCall) -> float:
    """Seconds until the lease taken for an attempt runs out (begin_attempt adds the call's timeout twice)."""
    return 2 * need.call.timeout + rt.settings.lease_seconds


def test_job_of_a_dead_worker_is_not_taken_over_before_its_lease_ends(api, rt, server, clock, worker):
    uuid, need = crashed_job(api, rt, server, idempotent=True)

    clock.advance(lease_end(rt, need) - 1)
    worker.run_until_idle()

    assert dict(server.hits) == {"/a": 1, "/b": 1}
    assert job(api, uuid)["status"] == "running"


def test_idempotent_step_interrupted_by_a_crash_is_retried(api, rt, server, clock, worker):
    uuid, need = crashed_job(api, rt, server, idempotent=True)

    clock.advance(lease_end(rt, need) + 1)
    worker.run_until_idle()

    done = job(api, uuid)
    assert done["status"] == "succeeded"
    assert dict(server.hits) == {"/a": 1, "/b": 2}
    assert (done["steps"][1]["status"], done["steps"][1]["attempts"]) == ("done", 2)
    [retry] = of_type(events(api, uuid), "step.retrying")
    assert (retry["data"]["reason"], retry["data"]["step"]["order"]) == ("interrupted", 2)


def test_non_idempotent_step_interrupted_by_a_crash_stops_the_job(api, rt, server, clock, worker):
    uuid, need = crashed_job(api, rt, server, idempotent=False)

    clock.advance(lease_end(rt, need) + 1)
    worker.run_until_idle()

    stopped = job(api, uuid)
    assert (stopped["status"], stopped["stop_reason"], stopped["ended_by"]) == ("stopped", "interrupted", "system")
    assert "127.0.0.1" in stopped["message"] and "idempotent" in stopped["message"]
    assert dict(server.hits) == {"/a": 1, "/b": 1}
    assert (stopped["steps"][0]["status"], stopped["steps"][1]["status"]) == ("done", "failed")
