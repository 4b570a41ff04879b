"""Batches and call trees on PostgreSQL, where claims skip locked rows and a parent may be locked by someone else."""
from __future__ import annotations

import threading

from sqlalchemy import event, select

from runner.engine import JobWorker
from runner.models import Job
from tests.runner.test_engine import calls, http, manual, publish, start
from tests.runner.test_engine_batches import invoke_on_a_thread


def _commits(engine, seen: list[int]) -> None:
    event.listen(engine, "commit", lambda conn: seen.append(1))


def test_a_waiting_invocation_runs_parent_and_child_in_three_transactions_on_postgres(pg_rt, pg_api, server):
    child = publish(pg_api, "Flush the cache", [http(server.url + "/flush")])
    parent = publish(pg_api, "Roll out the release", [http(server.url + "/deploy"), calls(child)])
    committed: list[int] = []
    _commits(pg_rt.db.engine, committed)
    statements: list[str] = []
    event.listen(pg_rt.db.engine, "commit", lambda conn: statements.append("COMMIT"))
    event.listen(pg_rt.db.engine, "before_cursor_execute", lambda conn, cursor, sql, *_: statements.append(sql))

    response = pg_api.post(f"/runbooks/{parent}/jobs", json={"wait": 5})

    assert response.status_code == 200, response.get_json()
    assert response.get_json()["job"]["status"] == "succeeded"
    assert (server.hits["/deploy"], server.hits["/flush"], len(committed)) == (1, 1, 3)
    # Answered as the last transaction left the parent, without reading its steps again: timestamps and JSON as
    # PostgreSQL gives them back.
    answered = response.get_json()["job"]
    after_last_commit = statements[len(statements) - statements[::-1].index("COMMIT"):]
    assert [sql for sql in after_last_commit if "FROM step_events" in sql] == []
    assert answered == pg_api.get(f"/jobs/{answered['uuid']}").get_json()


def test_a_worker_batch_skips_the_jobs_another_transaction_holds(pg_rt, pg_api):
    key = publish(pg_api, "Page the on-call engineer", [manual("Acknowledge the page")])
    uuids = [start(pg_api, key) for _ in range(4)]
    held, release = threading.Event(), threading.Event()

    def hold_first() -> None:
        with pg_rt.db.write() as session:
            session.scalar(select(Job).where(Job.uuid == uuids[0]).with_for_update())
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold_first)
    holder.start()
    try:
        assert held.wait(10)
        moved = JobWorker(pg_rt, worker_id="batch-worker", threads=1).claim(8)
    finally:
        release.set()
        holder.join(10)

    assert sorted(uuid for uuid, _ in moved) == sorted(uuids[1:])
    with pg_rt.db.read() as session:
        statuses = dict(session.execute(select(Job.uuid, Job.status).where(Job.uuid.in_(uuids))).all())
    assert [statuses[uuid] for uuid in uuids] == ["queued", "waiting", "waiting", "waiting"]


def test_a_parent_locked_by_someone_else_while_its_child_runs_still_moves_on(pg_rt, pg_api, server):
    server.delays["/flush"] = 0.5
    child = publish(pg_api, "Flush the cache", [http(server.url + "/flush")])
    parent = publish(pg_api, "Roll out the release", [calls(child), manual("Confirm the release")])
    caller, answers = invoke_on_a_thread(pg_api, parent, wait=10, until=lambda: server.hits["/flush"])
    release = threading.Event()
    try:
        with pg_rt.db.read() as session:
            parent_uuid = session.scalar(select(Job.uuid).where(Job.parent_job_uuid.is_(None)))
        locker = threading.Thread(target=_lock_for, args=(pg_rt, parent_uuid, release, 1.0))
        locker.start()
        caller.join(15)
        locker.join(15)
    finally:
        release.set()

    body = answers[0].get_json()["job"]
    assert (body["status"], body["waiting_for"], body["current_step"]) == ("waiting", "operator", 2)
    with pg_rt.db.read() as session:
        assert session.scalars(select(Job.lease_owner)).all() == [None, None]


def _lock_for(rt, job_uuid: str, release: threading.Event, seconds: float) -> None:
    with rt.db.write() as session:
        session.scalar(select(Job).where(Job.uuid == job_uuid).with_for_update())
        release.wait(seconds)


def test_concurrent_invocations_each_get_a_committed_job_on_postgres(pg_rt, pg_api):
    from runner.engine.invoke import JobRequest, Trigger, create_job
    from runner.models import Event, Workspace

    key = publish(pg_api, "Page the on-call engineer", [manual("Acknowledge the page")])
    with pg_rt.db.read() as session:
        workspace_id = session.scalar(select(Workspace.id).where(Workspace.slug == pg_api.slug))
    request = JobRequest(workspace_id=workspace_id, runbook_ref=key, parameters={}, trigger=Trigger("api", "olivia"))
    created: list = []
    callers = [threading.Thread(target=lambda: created.extend(create_job(pg_rt, request) for _ in range(5))) for _ in range(8)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(30)

    uuids = {job.uuid for job, new in created if new}
    assert len(uuids) == len(created) == 40
    with pg_rt.db.read() as session:
        stored = dict(session.execute(select(Job.uuid, Job.id).where(Job.uuid.in_(uuids))).all())
        events = session.scalars(select(Event.type).where(Event.job_id.in_(stored.values()))).all()
    assert {job.uuid: job.id for job, _ in created} == stored
    assert sorted(events) == ["job.created"] * 40 + ["runbook.invoked"] * 40
