"""Jobs over HTTP: invoking runbooks, waiting, operator actions, approvals, control, listing, events, and `job run`."""
from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select

from runner import create_app
from runner.cli import main
from runner.clock import ManualClock
from runner.config import Settings
from runner.engine import JobWorker
from runner.models import Event
from runner.runtime import Runtime
from runner.services import tenancy
from runner.services.pagination import encode_cursor
from tests.conftest import TEST_SETTINGS, Api, problem
from tests.runner.helpers import create_runbook

# Parameters of the runbooks most tests invoke: one required, one with a default, one enumerated.
PARAMS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "service": {"type": "string"},
        "replicas": {"type": "integer", "minimum": 1, "default": 2},
        "region": {"type": "string", "enum": ["eu-west", "eu-central"]},
    },
    "required": ["service"],
    "additionalProperties": False,
}
VALID = {"parameters": {"service": "db"}}

# Three manual steps; the first two leave something to roll back.
MANUAL_STEPS: list[dict[str, Any]] = [
    {"title": "Drain traffic from the primary", "rollback_note": "Restore traffic to the primary"},
    {"title": "Restart the primary", "rollback_note": "Start the previous version"},
    {"title": "Verify replication"},
]
# A step an admin must approve before an operator carries it out.
APPROVAL_STEPS: list[dict[str, Any]] = [
    {"title": "Fail over to the replica", "requires_approval": True, "owner_role": "admin"},
    {"title": "Verify the replica serves writes"},
]


# --- fixtures and builders ---------------------------------------------------------------------------


@pytest.fixture
def operator(make_api) -> Api:
    return make_api("operator", subject="olga")


@pytest.fixture
def runner_in(tmp_path: Path, migrated_template: Path, clock: ManualClock) -> Iterator[Callable[[str], tuple[Api, JobWorker]]]:
    """Build an owner Api and a worker of another runner serving ``environment`` (approvals gated in eu-production)."""
    built: list[Runtime] = []

    def build(environment: str) -> tuple[Api, JobWorker]:
        path = tmp_path / f"{environment}.db"
        shutil.copy(migrated_template, path)
        settings = Settings.from_env({}, database_url=f"sqlite:///{path}", var_dir=str(tmp_path / environment),
                                     environment=environment, approval_environments="eu-production", **TEST_SETTINGS)
        runtime = Runtime.from_settings(settings, clock=clock)
        built.append(runtime)
        tenancy.create_workspace(runtime, "acme")
        token, _ = tenancy.create_token(runtime, "acme", role="owner", subject="olivia")
        return Api(create_app(runtime=runtime).test_client(), "acme", token), JobWorker(runtime, worker_id="env-worker", threads=1)

    yield build
    for runtime in built:
        runtime.db.dispose()


def _http(server: Any, path: str, **action: Any) -> dict[str, Any]:
    return {"title": f"Call {path}", "action": {"type": "http", "url": server.url + path, **action}}


def _runbook(api: Api, name: str, steps: list[dict[str, Any]], *, status: str = "published", **fields: Any) -> dict[str, Any]:
    """Create a callable runbook named ``name`` with these steps, in ``status``."""
    return create_runbook(api, name.replace("-", " ").capitalize(), status=status,
                          **{"name": name, "callable": True, "steps": steps, **fields})


def _invoke(api: Api, ref: str, body: Any = None, **kw: Any):
    return api.post(f"/runbooks/{ref}/jobs", json={"parameters": {}} if body is None else body, **kw)


def _start(api: Api, ref: str, body: Any = None, **kw: Any) -> str:
    response = _invoke(api, ref, body, **kw)
    assert response.status_code == 202, response.get_json()
    return response.get_json()["job"]["uuid"]


def _job(api: Api, uuid: str) -> dict[str, Any]:
    response = api.get(f"/jobs/{uuid}")
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def _events(api: Api, uuid: str, **query: Any) -> list[dict[str, Any]]:
    response = api.get(f"/jobs/{uuid}/events", query_string=query)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["items"]


def _types(api: Api, uuid: str) -> list[str]:
    return [e["type"] for e in _events(api, uuid)]


def _snapshot(api: Api, uuid: str) -> tuple[dict[str, Any], list[str]]:
    """What a refused request must leave unchanged: the job and its events."""
    return _job(api, uuid), _types(api, uuid)


def _uuids(api: Api, **query: Any) -> list[str]:
    response = api.get("/jobs", query_string=query)
    assert response.status_code == 200, response.get_json()
    return [item["uuid"] for item in response.get_json()["items"]]


def _event_rows(rt: Runtime) -> int:
    with rt.db.read() as session:
        return session.scalar(select(func.count()).select_from(Event).where(Event.job_id.is_not(None)))


def _waiting_job(api: Api, worker: JobWorker, name: str = "restart-primary", steps: list[dict[str, Any]] | None = None) -> str:
    """Start a job of a manual runbook and let it reach its first waiting step."""
    _runbook(api, name, MANUAL_STEPS if steps is None else steps)
    uuid = _start(api, name)
    worker.run_until_idle()
    return uuid


def _step(job: dict[str, Any], order: int) -> dict[str, Any]:
    return job["steps"][order - 1]


# --- invoking ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ref", ["RB-00001", "rotate-tls"], ids=["by_key", "by_name"])
def test_invoke_answers_202_with_a_queued_job_and_its_location(api, rt, ref):
    _runbook(api, "rotate-tls", MANUAL_STEPS, parameters=PARAMS)

    response = _invoke(api, ref, VALID)

    assert response.status_code == 202
    job = response.get_json()["job"]
    assert job["status"] == "queued"
    assert job["runbook"]["key"] == "RB-00001"
    assert response.headers["Location"].endswith(f"/api/v1/ws/acme/jobs/{job['uuid']}")
    assert api.get(response.headers["Location"]).get_json()["uuid"] == job["uuid"]
    assert _uuids(api) == [job["uuid"]]


def test_invoke_applies_the_defaults_of_the_parameter_schema(api):
    _runbook(api, "rotate-tls", MANUAL_STEPS, parameters=PARAMS)

    uuid = _start(api, "rotate-tls", VALID)

    assert _job(api, uuid)["parameters"] == {"service": "db", "replicas": 2}


def _refused(api: Api, make_api: Callable[..., Api], role: str, ref: str, body: Any):
    caller = api if role == "owner" else make_api(role)
    if isinstance(body, str):
        return caller.post(f"/runbooks/{ref}/jobs", data=body, content_type="application/json")
    return _invoke(caller, ref, body)


@pytest.mark.parametrize(
    "runbook, role, ref, body, status, fragments, errors",
    [
        ({"status": "draft"}, "owner", "rotate-tls", VALID, 409, ["draft", "publish"], None),
        ({"status": "archived"}, "owner", "rotate-tls", VALID, 409, ["archived"], None),
        ({"callable": False}, "owner", "rotate-tls", VALID, 409, ["not callable"], None),
        ({"environments": ["eu-production"]}, "owner", "rotate-tls", VALID, 409, ["eu-production", "eu-qa"], None),
        ({}, "owner", "RB-09999", VALID, 404, ["RB-09999"], None),
        ({}, "owner", "rotate-tls", {"parameters": {"replicas": 0, "region": "mars"}}, 422, ["parameters"],
         [("parameters.region", "mars"), ("parameters.replicas", 0), ("parameters.service", None)]),
        ({}, "owner", "rotate-tls", {"parameters": ["db"]}, 422, ["object"], [("parameters", ["db"])]),
        ({}, "owner", "rotate-tls", {"parameters": "service=db"}, 422, ["object"], [("parameters", "service=db")]),
        ({}, "owner", "rotate-tls", {"parameters": None}, 422, ["parameters"], [("parameters", None)]),
        ({}, "owner", "rotate-tls", {**VALID, "priority": "high"}, 422, ["priority"], [("priority", "high")]),
        ({}, "owner", "rotate-tls", {**VALID, "wait": 301}, 422, ["wait"], [("wait", 301)]),
        ({}, "owner", "rotate-tls", {**VALID, "wait": -1}, 422, ["wait"], [("wait", -1)]),
        ({}, "owner", "rotate-tls", '{"parameters": {', 400, ["JSON"], None),
        ({}, "member", "rotate-tls", VALID, 403, ["member"], None),
    ],
    ids=["draft", "archived", "not_callable", "wrong_environment", "unknown_runbook", "invalid_parameters",
         "parameters_not_an_object", "parameters_a_string", "parameters_null", "unknown_body_field", "wait_too_long",
         "wait_negative", "malformed_json", "member_role"],
)
def test_refused_invocation_creates_no_job_and_no_event(api, make_api, rt, runbook, role, ref, body, status, fragments, errors):
    _runbook(api, "rotate-tls", MANUAL_STEPS, parameters=PARAMS, **runbook)

    response = _refused(api, make_api, role, ref, body)

    assert response.status_code == status
    detail = problem(response)["detail"]
    for fragment in fragments:
        assert fragment in detail
    if errors is not None:
        assert sorted((e["field"], e["value"]) for e in response.get_json()["errors"]) == errors
    assert _uuids(api) == []
    assert _event_rows(rt) == 0


# --- Idempotency-Key ---------------------------------------------------------------------------------------


def test_same_idempotency_key_and_body_return_the_same_job(api, rt):
    _runbook(api, "rotate-tls", MANUAL_STEPS, parameters=PARAMS)
    first = _start(api, "rotate-tls", VALID, headers={"Idempotency-Key": "deploy-42"})
    events = _event_rows(rt)

    again = _start(api, "rotate-tls", VALID, headers={"Idempotency-Key": "deploy-42"})

    assert again == first
    assert _uuids(api) == [first]
    assert _event_rows(rt) == events


def test_same_idempotency_key_with_another_body_is_422_naming_the_key(api, rt):
    _runbook(api, "rotate-tls", MANUAL_STEPS, parameters=PARAMS)
    first = _start(api, "rotate-tls", VALID, headers={"Idempotency-Key": "deploy-42"})
    events = _event_rows(rt)

    response = _invoke(api, "rotate-tls", {"parameters": {"service": "cache"}}, headers={"Idempotency-Key": "deploy-42"})

    assert response.status_code == 422
    body = problem(response)
    assert "deploy-42" in body["detail"]
    assert body["errors"] == [{"field": "Idempotency-Key", "message": "reused with a different body", "value": "deploy-42"}]
    assert _uuids(api) == [first]
    assert _event_rows(rt) == events


def test_idempotency_key_longer_than_the_store_keeps_is_422_naming_it(api, rt):
    _runbook(api, "rotate-tls", MANUAL_STEPS, parameters=PARAMS)
    key = "k" * 201

    response = _invoke(api, "rotate-tls", VALID, headers={"Idempotency-Key": key})

    assert response.status_code == 422
    assert problem(response)["errors"][0]["field"] == "Idempotency-Key"
    assert _uuids(api) == []
    assert _event_rows(rt) == 0


@pytest.mark.parametrize("key", ["", "   "])
def test_a_blank_idempotency_key_is_422_naming_it_every_time(api, rt, key):
    _runbook(api, "rotate-tls", MANUAL_STEPS, parameters=PARAMS)

    answers = [_invoke(api, "rotate-tls", VALID, headers={"Idempotency-Key": key}) for _ in range(2)]

    assert [a.status_code for a in answers] == [422, 422]
    assert problem(answers[1])["errors"] == [{"field": "Idempotency-Key", "message": "blank", "value": key}]
    assert _uuids(api) == []
    assert _event_rows(rt) == 0


def test_different_idempotency_keys_start_different_jobs(api):
    _runbook(api, "rotate-tls", MANUAL_STEPS, parameters=PARAMS)

    first = _start(api, "rotate-tls", VALID, headers={"Idempotency-Key": "deploy-42"})
    second = _start(api, "rotate-tls", VALID, headers={"Idempotency-Key": "deploy-43"})

    assert first != second
    assert _uuids(api) == [second, first]


# --- wait ----------------------------------------------------------------------------------------------


def test_wait_answers_200_with_the_finished_job(api, server):
    _runbook(api, "health-sweep", [_http(server, "/api"), _http(server, "/db")])

    response = _invoke(api, "health-sweep", {"parameters": {}, "wait": 5})

    assert response.status_code == 200
    job = response.get_json()["job"]
    assert job["status"] == "succeeded"
    assert [s["status"] for s in job["steps"]] == ["done", "done"]
    assert [s["output"]["status"] for s in job["steps"]] == [200, 200]
    assert (server.hits["/api"], server.hits["/db"]) == (1, 1)
    assert response.headers["Location"].endswith(f"/jobs/{job['uuid']}")


def test_wait_answers_202_when_the_job_waits_for_an_operator(api):
    _runbook(api, "restart-primary", MANUAL_STEPS)

    response = _invoke(api, "restart-primary", {"parameters": {}, "wait": 0.3})

    assert response.status_code == 202
    job = response.get_json()["job"]
    assert (job["status"], job["waiting_for"], job["current_step"]) == ("waiting", "operator", 1)
    assert _job(api, job["uuid"])["status"] == "waiting"


# --- operator actions --------------------------------------------------------------------------------------


def test_done_records_the_note_and_actor_and_moves_on(api, operator, worker):
    uuid = _waiting_job(api, worker)

    response = operator.post(f"/jobs/{uuid}/steps/1/done", json={"note": "traffic drained at 09:00"})

    assert response.status_code == 200
    job = _job(api, uuid)
    assert (_step(job, 1)["status"], _step(job, 1)["note"], _step(job, 1)["actor"]) == ("done", "traffic drained at 09:00", "olga")
    assert (job["status"], job["current_step"], _step(job, 2)["status"]) == ("waiting", 2, "waiting")


@pytest.mark.parametrize("body", [{}, {"reason": ""}, {"reason": "   "}], ids=["missing", "empty", "blank"])
def test_skip_without_a_reason_is_422_and_changes_nothing(api, operator, worker, body):
    uuid = _waiting_job(api, worker)
    before = _snapshot(api, uuid)

    response = operator.post(f"/jobs/{uuid}/steps/1/skip", json=body)

    assert response.status_code == 422
    assert [e["field"] for e in problem(response)["errors"]] == ["reason"]
    assert _snapshot(api, uuid) == before


def test_skip_with_a_reason_records_it(api, operator, worker):
    uuid = _waiting_job(api, worker)

    response = operator.post(f"/jobs/{uuid}/steps/1/skip", json={"reason": "traffic already drained"})

    assert response.status_code == 200
    step = _step(_job(api, uuid), 1)
    assert (step["status"], step["note"], step["actor"]) == ("skipped", "traffic already drained", "olga")


def test_fail_ends_the_job_as_failed_by_the_person_with_rollback_notes_newest_first(api, operator, worker, clock):
    uuid = _waiting_job(api, worker)
    for order in (1, 2):
        clock.advance(60)
        assert operator.post(f"/jobs/{uuid}/steps/{order}/done", json={}).status_code == 200
    clock.advance(60)

    response = operator.post(f"/jobs/{uuid}/steps/3/fail", json={"note": "replication lag keeps growing"})

    assert response.status_code == 200
    job = _job(api, uuid)
    assert (job["status"], job["ended_by"], job["ended_by_actor"], job["stopped_step"]) == ("failed", "person", "olga", 3)
    assert "replication lag keeps growing" in job["message"]
    assert (_step(job, 3)["status"], _step(job, 3)["note"]) == ("failed", "replication lag keeps growing")
    assert job["summary"]["rollback_notes"] == [
        {"order": 2, "title": "Restart the primary", "rollback_note": "Start the previous version"},
        {"order": 1, "title": "Drain traffic from the primary", "rollback_note": "Restore traffic to the primary"},
    ]
    assert _types(api, uuid)[-1] == "job.failed"


def test_fail_without_a_note_is_422_and_changes_nothing(api, operator, worker):
    uuid = _waiting_job(api, worker)
    before = _snapshot(api, uuid)

    response = operator.post(f"/jobs/{uuid}/steps/1/fail", json={})

    assert response.status_code == 422
    assert [e["field"] for e in problem(response)["errors"]] == ["note"]
    assert _snapshot(api, uuid) == before


@pytest.mark.parametrize("action, body", [("done", {}), ("skip", {"reason": "not needed"}), ("fail", {"note": "broken"})])
def test_acting_on_a_step_that_is_not_current_is_409_naming_the_current_step(api, operator, worker, action, body):
    uuid = _waiting_job(api, worker)
    before = _snapshot(api, uuid)

    response = operator.post(f"/jobs/{uuid}/steps/2/{action}", json=body)

    assert response.status_code == 409
    found = problem(response)
    assert "step 1" in found["detail"]
    assert found["current_step"] == 1
    assert _snapshot(api, uuid) == before


@pytest.mark.parametrize("action, body", [("done", {}), ("skip", {"reason": "not needed"}), ("fail", {"note": "broken"})])
def test_acting_on_a_finished_job_is_409_naming_its_status(api, operator, worker, action, body):
    uuid = _waiting_job(api, worker)
    assert operator.post(f"/jobs/{uuid}/abort", json={}).status_code == 200
    before = _snapshot(api, uuid)

    response = operator.post(f"/jobs/{uuid}/steps/1/{action}", json=body)

    assert response.status_code == 409
    found = problem(response)
    assert "cancelled" in found["detail"]
    assert found["current_status"] == "cancelled"
    assert _snapshot(api, uuid) == before


@pytest.mark.parametrize("path, body", [
    ("steps/1/done", {}), ("steps/1/skip", {"reason": "not needed"}), ("steps/1/fail", {"note": "broken"}),
    ("steps/1/approve", {}), ("pause", None), ("resume", None), ("abort", {}),
])
def test_member_may_not_act_on_a_job(api, make_api, worker, path, body):
    uuid = _waiting_job(api, worker)
    before = _snapshot(api, uuid)

    response = make_api("member").post(f"/jobs/{uuid}/{path}", json=body)

    assert response.status_code == 403
    assert "member" in problem(response)["detail"]
    assert _snapshot(api, uuid) == before


# --- approvals -------------------------------------------------------------------------------------------


def test_step_that_requires_approval_waits_for_it(api, worker):
    uuid = _waiting_job(api, worker, "fail-over", APPROVAL_STEPS)

    job = _job(api, uuid)

    assert (job["status"], job["waiting_for"], job["current_step"]) == ("waiting", "approval", 1)
    assert (_step(job, 1)["status"], _step(job, 1)["requires_approval"]) == ("waiting", True)


def test_done_before_the_approval_is_409(api, operator, worker):
    uuid = _waiting_job(api, worker, "fail-over", APPROVAL_STEPS)
    before = _snapshot(api, uuid)

    response = operator.post(f"/jobs/{uuid}/steps/1/done", json={})

    assert response.status_code == 409
    assert "approval" in problem(response)["detail"]
    assert _snapshot(api, uuid) == before


def test_approval_by_a_role_below_the_owner_role_is_403_naming_it(api, operator, worker):
    uuid = _waiting_job(api, worker, "fail-over", APPROVAL_STEPS)
    before = _snapshot(api, uuid)

    response = operator.post(f"/jobs/{uuid}/steps/1/approve", json={})

    assert response.status_code == 403
    found = problem(response)
    assert "'admin'" in found["detail"]
    assert found["required_role"] == "admin"
    assert _snapshot(api, uuid) == before
    assert _step(before[0], 1)["approved_by"] is None


def test_approval_by_the_owner_role_lets_the_step_proceed(api, make_api, operator, worker, clock):
    uuid = _waiting_job(api, worker, "fail-over", APPROVAL_STEPS)
    clock.advance(90)

    response = make_api("admin", subject="ada").post(f"/jobs/{uuid}/steps/1/approve", json={"note": "go"})

    assert response.status_code == 200
    job = _job(api, uuid)
    assert (job["status"], job["waiting_for"], job["current_step"]) == ("waiting", "operator", 1)
    assert _step(job, 1)["approved_by"] == "ada"
    assert _step(job, 1)["approved_at"] == clock.now().isoformat()
    assert "step.approved" in _types(api, uuid)
    assert operator.post(f"/jobs/{uuid}/steps/1/done", json={}).status_code == 200
    assert _job(api, uuid)["current_step"] == 2


@pytest.mark.parametrize("environment, waiting_for", [("eu-production", "approval"), ("eu-qa", "operator")])
def test_destructive_step_needs_an_approval_only_where_the_environment_gates_it(runner_in, environment, waiting_for):
    env_api, env_worker = runner_in(environment)
    uuid = _waiting_job(env_api, env_worker, "drop-table", [{"title": "Drop the old table", "is_destructive": True}])

    job = _job(env_api, uuid)

    assert job["environment"] == environment
    assert (job["status"], job["waiting_for"]) == ("waiting", waiting_for)
    assert _step(job, 1)["requires_approval"] is (waiting_for == "approval")


# --- pause, resume, abort ----------------------------------------------------------------------------------


def test_pause_takes_effect_only_after_the_waiting_step_is_done(api, operator, worker):
    uuid = _waiting_job(api, worker)

    requested = operator.post(f"/jobs/{uuid}/pause")

    assert requested.status_code == 200
    assert (requested.get_json()["status"], requested.get_json()["pause_requested"]) == ("waiting", True)
    assert operator.post(f"/jobs/{uuid}/steps/1/done", json={}).status_code == 200
    job = _job(api, uuid)
    assert (job["status"], job["pause_requested"]) == ("paused", False)
    assert [s["status"] for s in job["steps"]] == ["done", "pending", "pending"]
    worker.run_until_idle()
    assert _job(api, uuid)["status"] == "paused"


def test_resume_continues_a_paused_job(api, operator, worker):
    uuid = _waiting_job(api, worker)
    operator.post(f"/jobs/{uuid}/pause")
    operator.post(f"/jobs/{uuid}/steps/1/done", json={})

    response = operator.post(f"/jobs/{uuid}/resume")

    assert response.status_code == 200
    job = _job(api, uuid)
    assert (job["status"], job["waiting_for"], job["current_step"]) == ("waiting", "operator", 2)
    assert _step(job, 2)["status"] == "waiting"
    assert "job.resumed" in _types(api, uuid)


@pytest.mark.parametrize("action, answers, state", [
    ("resume", (500,), "running"),  # its http step waits to retry: running, not paused
    ("pause", (), "succeeded"),
])
def test_control_of_a_job_in_the_wrong_state_is_409_naming_the_state(api, operator, worker, server, action, answers, state):
    server.script("/flaky", *answers)
    _runbook(api, "flaky-call", [_http(server, "/flaky", retries=1, backoff_seconds=60)])
    uuid = _start(api, "flaky-call")
    worker.run_until_idle()
    before = _snapshot(api, uuid)
    assert before[0]["status"] == state

    response = operator.post(f"/jobs/{uuid}/{action}")

    assert response.status_code == 409
    found = problem(response)
    assert state in found["detail"]
    assert found["current_status"] == state
    assert _snapshot(api, uuid) == before


def test_abort_cancels_the_job_naming_who_aborted_it(api, operator, worker):
    uuid = _waiting_job(api, worker)

    response = operator.post(f"/jobs/{uuid}/abort", json={"reason": "wrong maintenance window"})

    assert response.status_code == 200
    job = _job(api, uuid)
    assert (job["status"], job["ended_by"], job["ended_by_actor"], job["stop_reason"]) == ("cancelled", "person", "olga", None)
    assert "olga" in job["message"] and "wrong maintenance window" in job["message"]
    assert _step(job, 1)["status"] == "cancelled"
    assert _types(api, uuid)[-1] == "job.cancelled"


def test_aborting_a_parent_cancels_its_waiting_child(api, operator, worker):
    _runbook(api, "child", [{"title": "Confirm with the team"}])
    _runbook(api, "parent", [{"title": "Run the child", "action": {"type": "runbook", "runbook": "child"}}])
    parent = _start(api, "parent")
    worker.run_until_idle()
    [child] = _job(api, parent)["summary"]["children"]
    assert (_job(api, parent)["waiting_for"], _job(api, child)["waiting_for"]) == ("child", "operator")

    assert operator.post(f"/jobs/{parent}/abort", json={}).status_code == 200

    ended = _job(api, child)
    assert (ended["status"], ended["ended_by"], ended["stop_reason"]) == ("cancelled", "parent", "parent_aborted")
    assert parent in ended["message"] and "olga" in ended["message"]
    assert _job(api, parent)["status"] == "cancelled"
    for uuid in (parent, child):
        types = _types(api, uuid)
        assert types[-1] == "job.cancelled"
        assert "job.stopped_by_system" not in types


# --- listing and tenancy ------------------------------------------------------------------------------------


def test_jobs_are_listed_newest_first(api):
    _runbook(api, "rotate-tls", MANUAL_STEPS)
    started = [_start(api, "rotate-tls") for _ in range(3)]

    assert _uuids(api) == started[::-1]


@pytest.fixture
def scene(api, operator, worker) -> dict[str, str]:
    """A parent waiting for its child, a cancelled job and a queued one, named by role."""
    _runbook(api, "child", [{"title": "Confirm with the team"}])
    _runbook(api, "parent", [{"title": "Run the child", "action": {"type": "runbook", "runbook": "child"}}])
    _runbook(api, "solo", MANUAL_STEPS)
    parent = _start(api, "parent")
    worker.run_until_idle()
    [child] = _job(api, parent)["summary"]["children"]
    cancelled = _start(api, "solo")
    assert operator.post(f"/jobs/{cancelled}/abort", json={}).status_code == 200
    return {"parent_job": parent, "child_job": child, "aborted_job": cancelled, "queued_job": _start(api, "solo")}


@pytest.mark.parametrize("query, expected", [
    ({"runbook": "solo"}, ["queued_job", "aborted_job"]),
    ({"runbook": "RB-00001"}, ["child_job"]),
    ({"status": "cancelled"}, ["aborted_job"]),
    ({"status": "waiting,queued"}, ["queued_job", "child_job", "parent_job"]),
    ({"parent": "parent_job"}, ["child_job"]),
])
def test_job_list_filters(api, scene, query, expected):
    query = {name: scene.get(value, value) for name, value in query.items()}

    assert _uuids(api, **query) == [scene[name] for name in expected]


def test_job_list_of_a_renamed_runbook_finds_its_jobs_by_the_new_name_and_the_old_one(api):
    key = _runbook(api, "rotate-tls", MANUAL_STEPS)["key"]
    before = _start(api, "rotate-tls")
    renamed = api.patch(f"/runbooks/{key}", json={"name": "rotate-certificates", "base_version": 1})
    assert renamed.status_code == 200, renamed.get_json()
    after = _start(api, "rotate-certificates")

    assert _uuids(api, runbook="rotate-certificates") == [after, before]
    assert _uuids(api, runbook=key) == [after, before]
    assert _uuids(api, runbook="rotate-tls") == [before]


def test_job_list_of_several_statuses_pages_newest_first_across_them(api, scene):
    seen: list[str] = []
    cursor = None
    for _ in range(len(scene) + 1):
        page = api.get("/jobs", query_string={"status": "waiting,cancelled,queued,waiting", "limit": 1, **({"cursor": cursor} if cursor else {})})
        seen += [item["uuid"] for item in page.get_json()["items"]]
        cursor = page.get_json()["next_cursor"]
        if cursor is None:
            break

    assert seen == [scene[name] for name in ("queued_job", "aborted_job", "child_job", "parent_job")]


@pytest.mark.parametrize("query, field, value", [
    ({"status": "done"}, "status", "done"), ({"status": "queued,finished"}, "status", "queued,finished"),
    ({"triggered_by": "cron"}, "triggered_by", "cron"),
])
def test_job_list_unknown_filter_value_is_422_naming_it(api, query, field, value):
    response = api.get("/jobs", query_string=query)

    assert response.status_code == 422
    errors = problem(response)["errors"]
    assert [(e["field"], e["value"]) for e in errors] == [(field, value)]


def test_job_list_cursor_visits_each_job_once(api):
    _runbook(api, "rotate-tls", MANUAL_STEPS)
    started = [_start(api, "rotate-tls") for _ in range(5)]
    seen: list[str] = []
    cursor = None

    for _ in range(len(started)):
        page = api.get("/jobs", query_string={"limit": 2, **({"cursor": cursor} if cursor else {})}).get_json()
        seen += [item["uuid"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert seen == started[::-1]
    assert cursor is None


@pytest.mark.parametrize("cursor", ["not-a-cursor", encode_cursor({"after": 3}), encode_cursor({"before": -1})])
def test_job_list_bad_cursor_is_400(api, cursor):
    response = api.get("/jobs", query_string={"cursor": cursor})

    assert response.status_code == 400
    assert problem(response)["errors"] == [{"field": "cursor", "message": "not a valid cursor", "value": cursor}]


@pytest.mark.parametrize("method, path, body", [
    ("GET", "", None), ("GET", "/events", None), ("POST", "/steps/1/done", {}), ("POST", "/steps/1/skip", {"reason": "x"}),
    ("POST", "/steps/1/fail", {"note": "x"}), ("POST", "/steps/1/approve", {}), ("POST", "/pause", None),
    ("POST", "/resume", None), ("POST", "/abort", {}),
])
def test_another_workspaces_job_is_not_found(api, make_api, rt, worker, method, path, body):
    uuid = _waiting_job(api, worker)
    tenancy.create_workspace(rt, "other")
    stranger = make_api("owner", slug="other")
    before = _snapshot(api, uuid)

    response = stranger.request(method, f"/jobs/{uuid}{path}", json=body)

    assert response.status_code == 404
    assert uuid in problem(response)["detail"]
    assert _snapshot(api, uuid) == before
    assert _uuids(stranger) == []


def test_another_workspace_cannot_invoke_the_runbook(api, make_api, rt):
    _runbook(api, "rotate-tls", MANUAL_STEPS, parameters=PARAMS)
    tenancy.create_workspace(rt, "other")
    stranger = make_api("owner", slug="other")

    response = _invoke(stranger, "rotate-tls", VALID)

    assert response.status_code == 404
    assert "rotate-tls" in problem(response)["detail"]
    assert _uuids(api) == [] and _uuids(stranger) == []
    assert _event_rows(rt) == 0


# --- events -----------------------------------------------------------------------------------------------


def test_job_events_are_numbered_from_one_without_gaps(api, operator, worker):
    uuid = _waiting_job(api, worker)
    for order in (1, 2, 3):
        operator.post(f"/jobs/{uuid}/steps/{order}/done", json={})

    events = _events(api, uuid)

    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["type"] == "job.created" and events[-1]["type"] == "job.succeeded"


def test_job_events_after_n_returns_only_later_events(api, operator, worker):
    uuid = _waiting_job(api, worker)
    operator.post(f"/jobs/{uuid}/steps/1/done", json={})
    total = len(_events(api, uuid))

    response = api.get(f"/jobs/{uuid}/events", query_string={"after": 3})

    page = response.get_json()
    assert [e["seq"] for e in page["items"]] == list(range(4, total + 1))
    assert page["next_after"] == total
    assert api.get(f"/jobs/{uuid}/events", query_string={"after": total}).get_json() == {"items": [], "next_after": total}


# --- the CLI: job run --------------------------------------------------------------------------------------


@pytest.fixture
def job_run(settings: Settings, tmp_path: Path, workspace: str) -> Callable[..., Result]:
    """Run ``runbook-manager job run ARGS`` against the test's database."""
    env = {"RUNBOOK_MANAGER_DATABASE_URL": settings.database_url, "RUNBOOK_MANAGER_WORKSPACE": workspace,
           "RUNBOOK_MANAGER_OUTBOUND_ALLOWLIST": "127.0.0.1", "RUNBOOK_MANAGER_VAR_DIR": str(tmp_path / "cli-var")}

    def run(*args: str) -> Result:
        return CliRunner().invoke(main, ["job", "run", *args], env=env, catch_exceptions=False)

    return run


def test_job_run_watch_of_a_succeeding_runbook_exits_0_printing_each_step(api, job_run, server):
    _runbook(api, "health-sweep", [_http(server, "/api"), _http(server, "/db")])

    result = job_run("health-sweep", "--watch", "--timeout", "30")

    assert result.exit_code == 0, result.output
    uuid = result.stdout.strip()
    assert _job(api, uuid)["status"] == "succeeded"
    for order, path in ((1, "/api"), (2, "/db")):
        assert f"step {order} (Call {path}): started" in result.stderr
        assert f"step {order} (Call {path}): done — HTTP 200" in result.stderr
    assert (server.hits["/api"], server.hits["/db"]) == (1, 1)


def test_job_run_watch_of_a_step_answering_500_exits_3(api, job_run, server):
    server.script("/broken", 500)
    _runbook(api, "broken-call", [_http(server, "/broken")])

    result = job_run("broken-call", "--watch", "--timeout", "30")

    assert result.exit_code == 3, result.output
    job = _job(api, result.stdout.strip())
    assert (job["status"], job["stop_reason"]) == ("stopped", "step_failed")
    assert "500" in result.stderr
    assert server.hits["/broken"] == 1


@pytest.mark.parametrize("param, expected", [("service=123", "123"), ("replicas=3", 3)])
def test_job_run_param_keeps_the_type_of_the_parameter(api, job_run, param, expected):
    _runbook(api, "rotate-tls", MANUAL_STEPS, parameters=PARAMS)

    result = job_run("rotate-tls", "--param", "service=db", "--param", param)

    assert result.exit_code == 0, result.output
    name = param.split("=")[0]
    assert _job(api, result.stdout.strip())["parameters"][name] == expected


@pytest.mark.parametrize("param, named", [
    ("replicas=0", "parameters.replicas"), ("region=mars", "parameters.region"), ("colour=red", "parameters.colour"),
    ("replicas", "NAME=VALUE"), ("replicas=NaN", "parameters.replicas"),
])
def test_job_run_with_an_invalid_parameter_fails_naming_it(api, rt, job_run, param, named):
    _runbook(api, "rotate-tls", MANUAL_STEPS, parameters=PARAMS)

    result = job_run("rotate-tls", "--param", "service=db", "--param", param)

    assert result.exit_code != 0
    assert named in result.stderr
    assert result.stdout == ""
    assert _uuids(api) == []
    assert _event_rows(rt) == 0


def test_job_run_watch_timeout_of_a_waiting_job_exits_5(api, job_run):
    _runbook(api, "restart-primary", MANUAL_STEPS)

    result = job_run("restart-primary", "--watch", "--timeout", "0.5")

    assert result.exit_code == 5, result.output
    assert "waiting for operator" in result.stderr
    assert _job(api, result.stdout.strip())["status"] == "waiting"
