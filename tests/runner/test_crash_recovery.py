"""A runner killed with SIGKILL mid-job resumes it after restart, never repeating a completed step."""
from __future__ import annotations

import pytest
import requests

from tests.processes import RunnerProcess, owner_headers, wait_until

pytestmark = pytest.mark.slow


def _prepare(settings, server, *, idempotent: bool) -> tuple[str, dict[str, str]]:
    headers = owner_headers(settings)
    server.delays["/s2"] = 3.0
    body = {
        "name": "three-calls",
        "title": "Three calls",
        "callable": True,
        "steps": [
            {"title": "Call one", "action": {"type": "http", "method": "POST", "url": server.url + "/s1"}},
            {"title": "Call two", "idempotent": idempotent,
             "action": {"type": "http", "method": "POST", "url": server.url + "/s2", "timeout_seconds": 5}},
            {"title": "Call three", "action": {"type": "http", "method": "POST", "url": server.url + "/s3"}},
        ],
    }
    return body, headers


def _run_and_kill(tmp_path, settings, body, headers, server) -> tuple[str, RunnerProcess]:
    first = RunnerProcess(tmp_path, settings.database_url).start()
    try:
        api = f"{first.url}/api/v1/ws/acme"
        assert requests.post(f"{api}/runbooks", json=body, headers=headers, timeout=5).status_code == 201
        assert requests.post(f"{api}/runbooks/three-calls/publish", headers=headers, timeout=5).status_code == 200
        answer = requests.post(f"{api}/runbooks/three-calls/jobs", json={}, headers=headers, timeout=5)
        assert answer.status_code == 202
        job_uuid = answer.json()["job"]["uuid"]
        wait_until(lambda: server.hits["/s2"] >= 1, timeout=45, what="step 2 in flight")
    finally:
        first.kill()
    return job_uuid, RunnerProcess(tmp_path, settings.database_url)


def _final(runner: RunnerProcess, job_uuid: str, headers: dict[str, str]) -> dict:
    def ended():
        job = requests.get(f"{runner.url}/api/v1/ws/acme/jobs/{job_uuid}", headers=headers, timeout=5).json()
        return job if job["status"] in ("succeeded", "failed", "stopped", "cancelled") else None

    return wait_until(ended, timeout=90, interval=0.2, what="job end after restart")


def test_killed_runner_retries_an_idempotent_step_after_restart(tmp_path, settings, server):
    body, headers = _prepare(settings, server, idempotent=True)
    job_uuid, second = _run_and_kill(tmp_path, settings, body, headers, server)
    with second:
        job = _final(second, job_uuid, headers)
    assert job["status"] == "succeeded"
    assert server.hits["/s1"] == 1, "a step completed before the kill ran again"
    assert server.hits["/s2"] == 2, "the interrupted idempotent step should run exactly once more"
    assert server.hits["/s3"] == 1
    assert [s["status"] for s in job["steps"]] == ["done", "done", "done"]


def test_killed_runner_stops_a_non_idempotent_step_as_interrupted(tmp_path, settings, server):
    body, headers = _prepare(settings, server, idempotent=False)
    job_uuid, second = _run_and_kill(tmp_path, settings, body, headers, server)
    with second:
        job = _final(second, job_uuid, headers)
    assert job["status"] == "stopped"
    assert job["stop_reason"] == "interrupted"
    assert "127.0.0.1" in job["message"] and "step 2" in job["message"]
    assert server.hits["/s1"] == 1
    assert server.hits["/s2"] == 1
    assert server.hits["/s3"] == 0
