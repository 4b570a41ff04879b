"""Operator actions land in the audit log, and an approval follows the step's owner_role."""
from __future__ import annotations

import pytest

from tests.conftest import problem


def _start(api, worker, steps):
    body = {"name": "gate", "title": "Gate", "callable": True, "steps": steps}
    assert api.post("/runbooks", json=body).status_code == 201
    assert api.post("/runbooks/gate/publish").status_code == 200
    job = api.post("/runbooks/gate/jobs", json={}).get_json()["job"]
    worker.run_until_idle()
    return job["uuid"]


def test_a_member_may_approve_a_step_whose_owner_role_is_member(api, make_api, worker):
    uuid = _start(api, worker, [{"title": "Confirm the change window", "requires_approval": True, "owner_role": "member"}])
    member = make_api("member", subject="mia")

    response = member.post(f"/jobs/{uuid}/steps/1/approve", json={"note": "window confirmed"})

    assert response.status_code == 200
    step = response.get_json()["steps"][0]
    assert (step["approved_by"], response.get_json()["waiting_for"]) == ("mia", "operator")


def test_a_member_may_not_approve_a_step_without_owner_role(api, make_api, worker):
    uuid = _start(api, worker, [{"title": "Confirm the change window", "requires_approval": True}])
    member = make_api("member", subject="mia")

    response = member.post(f"/jobs/{uuid}/steps/1/approve", json={})

    assert "operator" in problem(response)["detail"] and response.status_code == 403
    assert api.get(f"/jobs/{uuid}").get_json()["steps"][0]["approved_by"] is None


@pytest.mark.parametrize("path, body, action", [
    ("steps/1/done", {"note": "paged"}, "step.done"),
    ("steps/1/skip", {"reason": "already paged"}, "step.skip"),
    ("pause", None, "job.pause"),
    ("abort", {"reason": "wrong incident"}, "job.abort"),
])
def test_every_operator_action_is_audited_with_its_actor(api, make_api, worker, path, body, action):
    uuid = _start(api, worker, [{"title": "Page the on-call engineer"}, {"title": "Post a status update"}])
    operator = make_api("operator", subject="otto")

    assert operator.post(f"/jobs/{uuid}/{path}", **({"json": body} if body is not None else {})).status_code == 200

    entries = api.get(f"/audit?target={uuid}&limit=200").get_json()["items"]
    mine = [e for e in entries if e["action"] == action]
    assert len(mine) == 1 and mine[0]["actor"] == "otto" and mine[0]["role"] == "operator"
