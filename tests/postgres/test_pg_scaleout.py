"""Several worker and scheduler processes on one PostgreSQL database: each step once, one scheduler, no lost delivery."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import func, select

from runner.auth import Actor, Role
from runner.clock import SystemClock
from runner.engine.invoke import JobRequest, Trigger, create_job
from runner.models import Job, StepEvent
from runner.runtime import Runtime
from runner.scheduling.scheduler import APSCHEDULER_TABLE
from runner.services import runbooks, tenancy
from tests.processes import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

STEPS = 3


def _spawn(role: str, database_url: str, tmp_path: Path, name: str, **env: str) -> subprocess.Popen[bytes]:
    environment = {
        **os.environ,
        "RUNBOOK_MANAGER_DATABASE_URL": database_url,
        "RUNBOOK_MANAGER_OUTBOUND_ALLOWLIST": "127.0.0.1",
        "RUNBOOK_MANAGER_LEASE_SECONDS": "3",
        "RUNBOOK_MANAGER_POLL_INTERVAL": "0.05",
        "RUNBOOK_MANAGER_WORKER_THREADS": "4",
        **env,
    }
    log = (tmp_path / f"{name}.log").open("wb")
    return subprocess.Popen([sys.executable, "-m", "runner.cli", role], env=environment, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def _prepare(pg_settings, server, jobs: int) -> tuple[Runtime, list[str]]:
    rt = Runtime.from_settings(pg_settings, clock=SystemClock())
    workspace = tenancy.create_workspace(rt, "acme")
    actor = Actor(workspace.id, "acme", "olivia", Role.OWNER)
    from runner.schemas.runbook import RunbookBodySchema

    body = RunbookBodySchema().load({
        "name": "three-calls", "title": "Three calls", "callable": True,
        "parameters": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
        "steps": [{"title": f"Call {i}", "idempotent": True,
                   "action": {"type": "http", "method": "POST", "url": server.url + f"/job/{{{{ params.n }}}}/step/{i}"}}
                  for i in range(1, STEPS + 1)],
    })
    runbooks.create(rt, actor, body)
    runbooks.transition(rt, actor, "three-calls", "publish")
    uuids = []
    for n in range(jobs):
        job, _ = create_job(rt, JobRequest(workspace.id, "three-calls", {"n": n}, Trigger("api", "olivia")))
        uuids.append(job.uuid)
    return rt, uuids


def _finished(rt: Runtime) -> int:
    with rt.db.read() as session:
        return session.scalar(select(func.count(Job.id)).where(Job.status.in_(["succeeded", "failed", "stopped", "cancelled"])))


def test_four_workers_run_every_step_of_500_jobs_exactly_once(pg_settings, server, tmp_path):
    rt, uuids = _prepare(pg_settings, server, 500)
    workers = [_spawn("worker", pg_settings.database_url, tmp_path, f"worker-{i}") for i in range(4)]
    try:
        wait_until(lambda: _finished(rt) == len(uuids), timeout=240, interval=0.5, what="all 500 jobs finished")
    finally:
        _stop(workers)
    with rt.db.read() as session:
        statuses = Counter(session.scalars(select(Job.status)))
        unclaimed = session.scalar(select(func.count(Job.id)).where(Job.lease_owner.is_not(None)))
    assert statuses == {"succeeded": 500}
    assert unclaimed == 0
    paths = [f"/job/{n}/step/{i}" for n in range(500) for i in range(1, STEPS + 1)]
    repeated = {p: server.hits[p] for p in paths if server.hits[p] != 1}
    assert not repeated, f"steps not run exactly once: {dict(list(repeated.items())[:10])}"


def test_a_killed_workers_jobs_are_taken_over_without_repeating_completed_steps(pg_settings, server, tmp_path):
    rt, uuids = _prepare(pg_settings, server, 150)
    for n in range(150):
        server.delays[f"/job/{n}/step/2"] = 0.05
    workers = [_spawn("worker", pg_settings.database_url, tmp_path, f"worker-{i}") for i in range(3)]
    try:
        wait_until(lambda: _finished(rt) >= 20, timeout=120, interval=0.1, what="some jobs finished")
        os.killpg(workers[0].pid, signal.SIGKILL)
        workers[0].wait(10)
        with rt.db.read() as session:
            done_before_kill = list(session.execute(
                select(Job.parameters, StepEvent.order).join(StepEvent, StepEvent.job_id == Job.id).where(StepEvent.status == "done")))
        wait_until(lambda: _finished(rt) == len(uuids), timeout=240, interval=0.5, what="all jobs finished after the kill")
    finally:
        _stop(workers)
    with rt.db.read() as session:
        statuses = Counter(session.scalars(select(Job.status)))
    assert statuses == {"succeeded": 150}
    assert done_before_kill, "the kill came before any step completed; the test proves nothing"
    for parameters, order in done_before_kill:
        assert server.hits[f"/job/{parameters['n']}/step/{order}"] == 1, "a step completed before the kill ran again"
    repeated = [p for p, count in server.hits.items() if p.startswith("/job/") and count > 1]
    assert len(repeated) <= 4, f"only the killed worker's in-flight steps may run twice: {repeated}"


def _force_due(rt: Runtime, schedule_id: str, when: float) -> None:
    """Make the stored job of a schedule due at ``when`` (what the passing of a cron tick does)."""
    from datetime import datetime, timezone

    store = SQLAlchemyJobStore(engine=rt.db.engine, tablename=APSCHEDULER_TABLE)
    store.start(BackgroundScheduler(timezone=timezone.utc), "default")
    job = store.lookup_job(schedule_id)
    job.next_run_time = datetime.fromtimestamp(when, timezone.utc)
    store.update_job(job)


def test_two_schedulers_fire_each_tick_once_and_the_survivor_takes_over(pg_settings, tmp_path):
    rt = Runtime.from_settings(pg_settings, clock=SystemClock())
    workspace = tenancy.create_workspace(rt, "acme")
    actor = Actor(workspace.id, "acme", "olivia", Role.OWNER)
    from runner.scheduling import service
    from runner.schemas.runbook import RunbookBodySchema

    runbooks.create(rt, actor, RunbookBodySchema().load({"name": "tick", "title": "Tick", "callable": True, "steps": [{"title": "Look"}]}))
    runbooks.transition(rt, actor, "tick", "publish")
    schedule = service.create(rt, actor, "tick", {"cron": "0 0 1 1 *", "timezone": "UTC"})
    schedulers = [_spawn("scheduler", pg_settings.database_url, tmp_path, f"scheduler-{i}") for i in range(2)]

    def jobs() -> int:
        with rt.db.read() as session:
            return session.scalar(select(func.count(Job.id)))

    def stored() -> bool:
        with rt.db.read() as session:
            from sqlalchemy import text

            return bool(session.execute(text(f"SELECT count(*) FROM {APSCHEDULER_TABLE}")).scalar())

    try:
        wait_until(stored, timeout=30, what="the schedule mirrored into the job store")
        _force_due(rt, schedule["id"], time.time() - 1)
        wait_until(lambda: jobs() >= 1, timeout=15, what="the first tick fired")
        time.sleep(2)  # both schedulers had several ticks to fire it again
        assert jobs() == 1
        leader = _leader(rt, schedulers)
        os.killpg(leader.pid, signal.SIGKILL)
        leader.wait(10)
        killed_at = time.monotonic()
        _force_due(rt, schedule["id"], time.time() - 0.5)
        wait_until(lambda: jobs() >= 2, timeout=15, what="the surviving scheduler fired the next tick")
        takeover = time.monotonic() - killed_at
        time.sleep(1)
        assert jobs() == 2
        assert takeover < 5, f"takeover took {takeover:.1f}s"
    finally:
        _stop(schedulers)


def _leader(rt: Runtime, schedulers: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    """The scheduler process whose database session holds the advisory lock (its pid is in application_name).

    Advisory locks belong to a database: other tests' schedulers hold the same key in theirs on the same server.
    """
    from sqlalchemy import text

    with rt.db.read() as session:
        names = list(session.execute(text(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.objid = :key AND l.granted "
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"),
            {"key": rt.settings.scheduler_leader_lock}).scalars())
    assert len(names) == 1, f"expected exactly one lock holder, got {names}"
    pid = int(names[0].rsplit("pid=", 1)[1])
    return next(p for p in schedulers if p.pid == pid)


def test_several_workers_deliver_each_event_exactly_once(pg_settings, server, tmp_path):
    import json

    from webhooks import subscriptions

    rt = Runtime.from_settings(pg_settings, clock=SystemClock())
    workspace = tenancy.create_workspace(rt, "acme")
    actor = Actor(workspace.id, "acme", "olivia", Role.OWNER)
    from runner.schemas.runbook import RunbookBodySchema

    runbooks.create(rt, actor, RunbookBodySchema().load({"name": "noted", "title": "Noted", "callable": True, "steps": [{"title": "Look"}]}))
    runbooks.transition(rt, actor, "noted", "publish")
    subscriptions.subscribe(rt, actor, {"events": ["job.created"], "target_url": server.url + "/receiver"})
    for _ in range(200):
        create_job(rt, JobRequest(workspace.id, "noted", {}, Trigger("api", "olivia")))
    workers = [_spawn("worker", pg_settings.database_url, tmp_path, f"deliverer-{i}", RUNBOOK_MANAGER_DELIVERY_THREADS="3")
               for i in range(3)]
    try:
        wait_until(lambda: server.hits["/receiver"] >= 200, timeout=120, interval=0.2, what="200 deliveries")
        time.sleep(1)
    finally:
        _stop(workers)
    ids = Counter(r["headers"]["webhook-id"] for r in server.requests if r["path"] == "/receiver")
    jobs = {json.loads(r["body"])["data"]["job"]["uuid"] for r in server.requests if r["path"] == "/receiver"}
    assert len(ids) == 200 and len(jobs) == 200, "an event was not delivered"
    assert max(ids.values()) == 1, "an event was delivered twice without a crash"
