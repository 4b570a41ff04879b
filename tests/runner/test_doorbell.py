"""`serve`'s background child is woken by the API's commits, not by its idle poll."""
from __future__ import annotations

import os
import threading
import time

import pytest
import requests

from runner import doorbell
from tests.processes import RunnerProcess, owner_headers, wait_until


@pytest.fixture
def pipe(monkeypatch):
    monkeypatch.setattr(doorbell, "_pipe", None)
    monkeypatch.setattr(doorbell, "_listening", False)
    doorbell.install()
    yield
    for end in doorbell._pipe:
        os.close(end)


def test_a_ring_wakes_the_matching_event_only(pipe):
    jobs, deliveries, stopping = threading.Event(), threading.Event(), threading.Event()
    doorbell.ring(doorbell.JOBS)
    thread = doorbell.listen({doorbell.JOBS: jobs, doorbell.DELIVERIES: deliveries}, stopping)
    try:
        assert jobs.wait(5)
        assert not deliveries.is_set()
    finally:
        stopping.set()
        thread.join(5)


def test_the_listening_process_does_not_ring_itself(pipe):
    stopping = threading.Event()
    stopping.set()
    doorbell.listen({}, stopping)
    doorbell.ring(doorbell.JOBS)
    with pytest.raises(BlockingIOError):
        os.read(doorbell._pipe[0], 1)


def test_ringing_a_full_pipe_neither_blocks_nor_fails_and_still_wakes(pipe):
    for _ in range(200_000):
        doorbell.ring(doorbell.DELIVERIES)
    with pytest.raises(BlockingIOError):
        os.write(doorbell._pipe[1], doorbell.DELIVERIES)  # the pipe is full; ring() above swallowed the same error
    deliveries, stopping = threading.Event(), threading.Event()
    thread = doorbell.listen({doorbell.DELIVERIES: deliveries}, stopping)
    try:
        assert deliveries.wait(5)
    finally:
        stopping.set()
        thread.join(5)


def test_without_serve_there_is_no_pipe_and_ringing_does_nothing(monkeypatch):
    monkeypatch.setattr(doorbell, "_pipe", None)
    doorbell.ring(doorbell.JOBS)
    assert doorbell.listen({}, threading.Event()) is None


@pytest.mark.slow
def test_serve_runs_a_new_job_at_once_even_with_a_long_idle_poll(tmp_path, settings, server):
    headers = owner_headers(settings)
    runner = RunnerProcess(tmp_path, settings.database_url, env={"RUNBOOK_MANAGER_POLL_INTERVAL": "120"}).start()
    try:
        api = f"{runner.url}/api/v1/ws/acme"
        body = {"name": "ping", "title": "Ping the service", "callable": True,
                "steps": [{"title": "Ping", "action": {"type": "http", "url": server.url + "/ping"}}]}
        assert requests.post(f"{api}/runbooks", json=body, headers=headers, timeout=5).status_code == 201
        assert requests.post(f"{api}/runbooks/ping/publish", headers=headers, timeout=5).status_code == 200
        # Let the background child settle into its idle wait (up to 120 s) before the job arrives.
        time.sleep(1)
        assert requests.post(f"{api}/runbooks/ping/jobs", json={}, headers=headers, timeout=5).status_code == 202
        wait_until(lambda: server.hits["/ping"] == 1, timeout=30, what="the job's http step")
    finally:
        runner.stop()
