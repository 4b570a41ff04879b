"""Deliveries pending when the runner is SIGKILLed are all delivered after it restarts."""
from __future__ import annotations

import json

import pytest
import requests

from tests.processes import RunnerProcess, owner_headers, wait_until

pytestmark = pytest.mark.slow

JOBS = 8
DELIVERY_ENV = {
    "RUNBOOK_MANAGER_DELIVERY_BACKOFF_BASE": "0.3",
    "RUNBOOK_MANAGER_DELIVERY_BACKOFF_MAX": "1",
    "RUNBOOK_MANAGER_DELIVERY_TIMEOUT": "2",
    "RUNBOOK_MANAGER_DELIVERY_MAX_ATTEMPTS": "100",
    "RUNBOOK_MANAGER_SUBSCRIPTION_FAILURE_LIMIT": "100",
}


def test_pending_deliveries_survive_sigkill(tmp_path, settings, server):
    headers = owner_headers(settings)
    server.script("/receiver", *([503] * 10_000))

    first = RunnerProcess(tmp_path, settings.database_url, env=DELIVERY_ENV).start()
    try:
        api = f"{first.url}/api/v1/ws/acme"
        body = {"name": "ping", "title": "Ping", "callable": True,
                "steps": [{"title": "Call the service", "action": {"type": "http", "url": server.url + "/noop"}}]}
        assert requests.post(f"{api}/runbooks", json=body, headers=headers, timeout=5).status_code == 201
        assert requests.post(f"{api}/runbooks/ping/publish", headers=headers, timeout=5).status_code == 200
        hook = requests.post(f"{api}/hooks", json={"events": ["job.succeeded"], "target_url": server.url + "/receiver"},
                             headers=headers, timeout=5)
        assert hook.status_code == 201
        jobs = {requests.post(f"{api}/runbooks/ping/jobs", json={}, headers=headers, timeout=5).json()["job"]["uuid"] for _ in range(JOBS)}
        receiver_jobs = lambda: {json.loads(r["body"])["data"]["job"]["uuid"] for r in server.requests if r["path"] == "/receiver"}  # noqa: E731
        wait_until(lambda: receiver_jobs() >= jobs, timeout=30, what="a refused attempt for every job")
    finally:
        first.kill()

    server.scripts["/receiver"] = []
    killed_at = len(server.requests)
    with RunnerProcess(tmp_path, settings.database_url, env=DELIVERY_ENV):
        def delivered_after_restart() -> set[str]:
            return {json.loads(r["body"])["data"]["job"]["uuid"] for r in server.requests[killed_at:] if r["path"] == "/receiver"}

        wait_until(lambda: delivered_after_restart() >= jobs, timeout=40, interval=0.2, what="every pending delivery delivered")
    ids_per_job: dict[str, set[str]] = {}
    for request in server.requests:
        if request["path"] == "/receiver":
            job_uuid = json.loads(request["body"])["data"]["job"]["uuid"]
            ids_per_job.setdefault(job_uuid, set()).add(request["headers"]["webhook-id"])
    assert set(ids_per_job) == jobs
    assert all(len(ids) == 1 for ids in ids_per_job.values()), "a retried delivery must keep its webhook-id"
