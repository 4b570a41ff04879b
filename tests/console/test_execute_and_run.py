"""Execute: the form generated from the parameter schema; then the run view and the actions on it."""
from __future__ import annotations

import html as htmllib
import re

import pytest

from tests.console.conftest import page
from tests.runner.helpers import create_runbook

PARAMETERS = {
    "type": "object",
    "required": ["region"],
    "properties": {
        "region": {"type": "string", "description": "Region to restart"},
        "replicas": {"type": "integer", "default": 3},
        "dry_run": {"type": "boolean", "default": True},
        "severity": {"enum": ["sev1", "sev2"], "default": "sev2"},
    },
}
STEPS = [
    {"title": "Drain traffic from {{ params.region }}", "owner_role": "operator", "est_minutes": 5,
     "rollback_note": "Put {{ params.region }} back in the pool"},
    {"title": "Restart {{ params.replicas }} pods", "owner_role": "admin", "est_minutes": 10, "requires_approval": True,
     "is_destructive": True, "rollback_note": "Roll back the deployment"},
    {"title": "Check the error rate ({{ params.severity }}, dry run {{ params.dry_run }})", "est_minutes": 3},
]


@pytest.fixture
def restart(api) -> dict:
    return create_runbook(api, "Restart the orders API", status="published", parameters=PARAMETERS, steps=STEPS)


def _start(console, key: str, **values: str) -> str:
    answer = console.post(f"/runbooks/{key}/execute", {"param-region": "eu-west-1", **values})
    assert answer.status_code == 303, page(answer).text
    return answer.headers["Location"].rsplit("/", 1)[1]


def _job(api, job_uuid: str) -> dict:
    return api.get(f"/jobs/{job_uuid}").get_json()


def test_execute_form_has_a_labelled_field_per_parameter(console, restart):
    form = page(console.get(f"/runbooks/{restart['key']}/execute"))

    for name in ("region", "replicas", "dry_run", "severity"):
        assert form.has("label", for_=f"f-param-{name}"), name
    assert form.has("input", id="f-param-region", name="param-region", required=True)
    assert form.has("input", id="f-param-replicas", value="3", inputmode="numeric")
    assert form.has("input", id="f-param-dry_run", type="checkbox", checked=True)
    assert [o.get("value") for o in form.find("option")] == ["", "0", "1"]
    assert "selected" in form.find("option", value="1")[0]
    assert "selected" not in form.find("option", value="0")[0]
    assert "Region to restart" in form.text


def test_parameter_errors_are_shown_next_to_their_fields_and_no_job_starts(console, api, restart):
    answer = console.post(f"/runbooks/{restart['key']}/execute", {"param-region": "", "param-replicas": "many"})

    assert answer.status_code == 422
    html = answer.get_data(as_text=True)
    assert re.search(r'id="f-param-region-error"><li>&#39;region&#39; is a required property', html)
    assert re.search(r'id="f-param-replicas-error"><li>&#39;many&#39; is not of type &#39;integer&#39;', html)
    assert page(answer).has("input", id="f-param-replicas", value="many", aria_invalid="true")
    assert api.get("/jobs").get_json()["items"] == []


@pytest.mark.parametrize("text", ["nan", "inf", "-Infinity", "1e400", "1_000", "\u0661", "\uff11\uff12"])
def test_a_number_field_holding_no_number_as_json_writes_one_is_refused_as_typed(console, api, restart, text):
    answer = console.post(f"/runbooks/{restart['key']}/execute", {"param-region": "eu-west-1", "param-replicas": text})

    assert answer.status_code == 422
    assert f'id="f-param-replicas-error"><li>{text!r} is not of type \'integer\'' in htmllib.unescape(answer.get_data(as_text=True))
    assert api.get("/jobs").get_json()["items"] == []


def test_a_choice_of_thousands_of_digits_is_refused_like_any_bad_value(console, api, restart):
    answer = console.post(f"/runbooks/{restart['key']}/execute", {"param-region": "eu-west-1", "param-severity": "1" * 5_000})

    assert answer.status_code == 422
    assert api.get("/jobs").get_json()["items"] == []


def test_a_choice_that_is_not_an_option_number_is_refused_like_any_bad_value(console, api, restart):
    answer = console.post(f"/runbooks/{restart['key']}/execute", {"param-region": "eu-west-1", "param-severity": "\u00b2"})

    assert answer.status_code == 422
    assert api.get("/jobs").get_json()["items"] == []


def test_execute_starts_a_job_with_typed_values_as_this_person(console, api, restart):
    job_uuid = _start(console, restart["key"], **{"param-replicas": "5", "param-severity": "0"})

    job = _job(api, job_uuid)
    assert job["parameters"] == {"region": "eu-west-1", "replicas": 5, "dry_run": False, "severity": "sev1"}
    assert (job["triggered_by"], job["actor"]) == ("person", "olivia")


def test_a_person_may_execute_a_runbook_that_is_not_callable(console, api, restart):
    assert restart["callable"] is False

    job_uuid = _start(console, restart["key"])

    assert _job(api, job_uuid)["runbook"]["key"] == restart["key"]


def test_submitting_the_execute_form_twice_starts_one_job(console, api, restart):
    form = {"param-region": "eu-west-1", "idempotency_key": "console:double-click"}

    first = console.post(f"/runbooks/{restart['key']}/execute", form)
    second = console.post(f"/runbooks/{restart['key']}/execute", form)

    assert first.headers["Location"] == second.headers["Location"]
    assert len(api.get("/jobs").get_json()["items"]) == 1


def test_run_view_shows_status_buttons_badges_and_timing(console, restart, worker):
    job_uuid = _start(console, restart["key"])
    worker.run_until_idle()

    run = page(console.get(f"/jobs/{job_uuid}"))

    assert run.has("button", id="step-1-done")
    assert run.has("button", id="step-1-skip") and run.has("button", id="step-1-fail")
    assert not run.has("button", id="step-2-approve")
    assert run.has("li", id="run-step-2", data_status="pending")
    step2 = run.text[run.text.index("Restart 3 pods"):]
    assert step2.startswith("Restart 3 pods Pending Destructive")
    assert "Drain traffic from eu-west-1" in run.text
    assert "Actual / estimated" in run.text and "/ 18 min" in run.text
    assert "ETA" in run.text and " UTC" in run.text
    assert run.has("div", id="run", data_live_url=f"/console/ws/acme/jobs/{job_uuid}/live")


def test_steps_done_and_approved_complete_the_run(console, api, restart, worker):
    job_uuid = _start(console, restart["key"])
    worker.run_until_idle()

    first = console.post_json(f"/jobs/{job_uuid}/steps/1/done", {"note": "drained"})
    approval = page(console.get(f"/jobs/{job_uuid}"))
    approved = console.post_json(f"/jobs/{job_uuid}/steps/2/approve", {})
    console.post_json(f"/jobs/{job_uuid}/steps/2/done", {})
    last = console.post_json(f"/jobs/{job_uuid}/steps/3/done", {})

    assert first.status_code == 200 and first.get_json()["status"] == "waiting"
    assert approval.has("button", id="step-2-approve", data_confirm=True)
    assert approved.status_code == 200
    assert last.get_json()["status"] == "succeeded" and last.get_json()["terminal"] is True
    job = _job(api, job_uuid)
    assert job["status"] == "succeeded"
    assert job["steps"][0]["note"] == "drained"
    assert job["steps"][1]["approved_by"] == "olivia"


def test_an_operator_gets_no_approve_button_for_an_admin_step_and_cannot_approve(make_console, api, restart, worker):
    operator = make_console("operator", subject="olga")
    job_uuid = _start(operator, restart["key"])
    worker.run_until_idle()
    operator.post(f"/jobs/{job_uuid}/steps/1/done")

    run = page(operator.get(f"/jobs/{job_uuid}"))
    refused = operator.post(f"/jobs/{job_uuid}/steps/2/approve")

    assert not run.has("button", id="step-2-approve")
    assert run.has("button", id="step-2-skip")
    assert refused.status_code == 403
    assert "must be approved by role 'admin' or higher" in page(refused).text
    assert _job(api, job_uuid)["waiting_for"] == "approval"


def test_a_member_sees_the_run_without_any_button(make_console, console, restart, worker):
    job_uuid = _start(console, restart["key"])
    worker.run_until_idle()
    member = make_console("member")

    run = page(member.get(f"/jobs/{job_uuid}"))

    assert run.has("li", id="run-step-1", data_status="waiting")
    assert not run.find("button", id=True)


def test_skip_needs_a_reason(console, api, restart, worker):
    job_uuid = _start(console, restart["key"])
    worker.run_until_idle()

    answer = console.post_json(f"/jobs/{job_uuid}/steps/1/skip", {"note": "  "})

    assert answer.status_code == 422
    assert answer.mimetype == "application/problem+json"
    assert "reason" in answer.get_json()["detail"]
    assert _job(api, job_uuid)["steps"][0]["status"] == "waiting"


def test_failing_a_step_shows_the_failure_and_the_rollback_notes(console, api, restart, worker):
    job_uuid = _start(console, restart["key"])
    worker.run_until_idle()
    console.post(f"/jobs/{job_uuid}/steps/1/done")
    console.post(f"/jobs/{job_uuid}/steps/2/approve")

    answer = console.post(f"/jobs/{job_uuid}/steps/2/fail", {"note": "pods crash-loop"})

    assert answer.status_code == 303
    run = page(console.get(f"/jobs/{job_uuid}"))
    assert run.has("div", id="end-banner")
    assert "Failed by olivia" in run.text and "pods crash-loop" in run.text
    notes = run.text[run.text.index("Rollback notes"):]
    assert "Step 1: Drain traffic from eu-west-1 — Put eu-west-1 back in the pool" in notes
    assert "Rollback: Roll back the deployment" in run.text
    assert _job(api, job_uuid)["status"] == "failed"


def test_pause_resume_and_abort(console, api, restart, worker):
    job_uuid = _start(console, restart["key"])
    worker.run_until_idle()

    paused = console.post_json(f"/jobs/{job_uuid}/pause")
    assert _job(api, job_uuid)["pause_requested"] is True
    assert 'id="job-resume"' in paused.get_json()["html"] and 'id="job-pause"' not in paused.get_json()["html"]
    console.post_json(f"/jobs/{job_uuid}/resume")
    assert _job(api, job_uuid)["pause_requested"] is False
    aborted = console.post_json(f"/jobs/{job_uuid}/abort")

    assert aborted.get_json()["status"] == "cancelled"
    assert _job(api, job_uuid)["status"] == "cancelled"
    run = page(console.get(f"/jobs/{job_uuid}"))
    assert "Cancelled by olivia" in run.text
    assert not run.has("button", id="job-abort")


def test_a_system_stop_shows_a_banner_with_reason_and_message(console, api, server, worker):
    server.script("/purge", 500)
    steps = [{"title": "Purge the cache", "action": {"type": "http", "method": "POST", "url": server.url + "/purge", "retries": 0}}]
    purge = create_runbook(api, "Purge the cache", status="published", steps=steps)
    job_uuid = _start(console, purge["key"], **{"param-region": ""})
    worker.run_until_idle()

    run = page(console.get(f"/jobs/{job_uuid}"))

    job = _job(api, job_uuid)
    assert job["status"] == "stopped"
    assert run.has("div", id="stop-banner", role="alert")
    banner = run.text[run.text.index("Stopped by the system"):]
    assert banner.startswith(f"Stopped by the system · {job['stop_reason']} {job['message']}")


def test_live_endpoint_returns_the_run_views_changing_parts(console, restart, worker):
    job_uuid = _start(console, restart["key"])
    before = console.client.get(f"/console/ws/acme/jobs/{job_uuid}/live").get_json()
    worker.run_until_idle()

    after = console.client.get(f"/console/ws/acme/jobs/{job_uuid}/live").get_json()

    assert (before["status"], before["terminal"]) == ("queued", False)
    assert 'id="step-1-done"' not in before["html"]
    assert after["status"] == "waiting"
    assert 'id="step-1-done"' in after["html"] and 'id="run-step-3" data-status="pending"' in after["html"]


def test_live_endpoint_answers_json_when_signed_out(make_console, restart, console, worker):
    job_uuid = _start(console, restart["key"])
    console.post("/console/sign-out")

    answer = console.client.get(f"/console/ws/acme/jobs/{job_uuid}/live", headers={"Accept": "application/json"})

    assert answer.status_code == 401
    assert answer.mimetype == "application/problem+json"


def test_runs_tab_lists_every_job_newest_first_with_who_started_it(console, api, make_api, restart):
    first = _start(console, restart["key"])
    robot = make_api("operator", subject="ci-robot")
    api.patch(f"/runbooks/{restart['key']}", json={"callable": True})
    second = robot.post(f"/runbooks/{restart['key']}/jobs", json={"parameters": {"region": "us-east-1"}}).get_json()["job"]["uuid"]

    runs = page(console.get(f"/runbooks/{restart['key']}/runs"))

    links = [a["href"] for a in runs.find("a", class_="mono")]
    assert links == [f"/console/ws/acme/jobs/{second}", f"/console/ws/acme/jobs/{first}"]
    assert "api: ci-robot" in runs.text and "olivia (in person)" in runs.text


def test_runs_tab_pages_with_a_more_link(console, restart, monkeypatch):
    from runner.console import tabs

    monkeypatch.setattr(tabs, "RUNS_PAGE", 1)
    jobs = [_start(console, restart["key"]) for _ in range(2)]

    first = page(console.get(f"/runbooks/{restart['key']}/runs"))
    more = [a["href"] for a in first.find("a", class_="btn") if "cursor=" in a["href"]]
    second = page(console.get(more[0]))

    assert [a["href"].rsplit("/", 1)[1] for a in first.find("a", class_="mono")] == [jobs[1]]
    assert [a["href"].rsplit("/", 1)[1] for a in second.find("a", class_="mono")] == [jobs[0]]
