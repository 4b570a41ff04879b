"""A long history of finished jobs slows nothing: the workers' claims and heartbeats, and the pages people read, go through indexes."""
from __future__ import annotations

from typing import Any
from uuid import uuid4

from sqlalchemy import select

from runner.db import insert_rows
from runner.engine.driver import claim, claim_and_move
from runner.engine.worker import renew_leases
from runner.models import AuditEntry, Job
from runner.runtime import Runtime
from tests.runner.helpers import counting, plan, scans, settings_on_each_store

# Each test runs on SQLite and on PostgreSQL.
settings = settings_on_each_store

# Finished jobs in the store: on PostgreSQL, enough that reading the whole table costs more than the index.
FINISHED = 5_000


def finished_jobs(rt: Runtime, like: str, count: int) -> None:
    """Add ``count`` finished copies of job ``like`` (no wake-up time), straight into the store."""
    with rt.db.write() as session:
        connection = session.connection()
        row = dict(connection.execute(select(Job.__table__).where(Job.uuid == like)).one()._mapping)
        del row["id"]
        copies = []
        for _ in range(count):
            job_uuid = str(uuid4())
            copies.append({**row, "uuid": job_uuid, "root_job_uuid": job_uuid, "status": "succeeded", "next_run_at": None,
                           "ended_at": row["created_at"], "ended_by": "system"})
        insert_rows(connection, Job.__table__, copies)


def publish(api, name: str, steps: list[dict[str, Any]] | None = None) -> None:
    body = {"name": name, "title": name.title(), "callable": True, "steps": [{"title": "Check"}] if steps is None else steps}
    assert api.post("/runbooks", json=body).status_code == 201
    assert api.post(f"/runbooks/{name}/publish").status_code == 200


def test_claiming_reads_due_jobs_through_their_index_not_every_job(api, rt):
    """Also on a table PostgreSQL has not analyzed since it grew: the idle workers' look for work scans no table."""
    publish(api, "one")
    due = api.post("/runbooks/one/jobs", json={}).get_json()["job"]["uuid"]
    finished_jobs(rt, due, FINISHED)

    with counting(rt.db.engine) as statements:
        moved = claim_and_move(rt, "w", 8)

    reads = [plan(rt, sql, parameters) for sql, parameters, _ in statements
             if sql.lstrip().upper().startswith("SELECT") and "FROM jobs" in sql and "next_run_at <=" in sql]
    assert [job_uuid for job_uuid, _ in moved] == [due]
    assert len(reads) == 2  # whether anything is due, then the due jobs themselves
    for found in reads:
        assert "ix_jobs_next_run_at" in found, found
        assert not scans(found, "jobs"), found


def test_a_workers_heartbeat_reads_only_the_jobs_it_holds(api, rt, clock):
    """Renewing leases every few seconds must not read every job ever run (on SQLite it holds the writer meanwhile)."""
    publish(api, "one")
    held = api.post("/runbooks/one/jobs", json={}).get_json()["job"]["uuid"]
    finished_jobs(rt, held, FINISHED)
    [leased] = claim(rt, "w", 8)
    clock.advance(5)

    with counting(rt.db.engine) as statements:
        renewed = renew_leases(rt, Job, "w")

    [found] = [plan(rt, sql, parameters) for sql, parameters, _ in statements if sql.startswith("UPDATE jobs")]
    assert (leased, renewed) == (held, 1)
    assert "ix_jobs_leased" in found, found
    assert not scans(found, "jobs"), found


def test_pages_of_one_runbook_status_or_parent_read_only_their_jobs(api, rt, worker):
    """The runbook list, a runbook, a job and the job list filtered by runbook, status or parent each read their jobs by index."""
    publish(api, "busy")
    publish(api, "child")
    publish(api, "parent", [{"title": "Run the child", "action": {"type": "runbook", "runbook": "child"}}])
    finished_jobs(rt, api.post("/runbooks/busy/jobs", json={}).get_json()["job"]["uuid"], FINISHED)
    parent = api.post("/runbooks/parent/jobs", json={}).get_json()["job"]["uuid"]
    worker.run_until_idle()
    # The indexes each page must read its jobs through: the workspace's (id) index alone would read every job in it.
    by_runbook, by_parent = ("ix_jobs_workspace_id_runbook_id_id",), ("ix_jobs_workspace_id_parent_job_uuid_id",)
    pages = {"/runbooks": by_runbook, "/runbooks/parent": by_runbook, "/jobs?runbook=parent": by_runbook, "/jobs?runbook=RB-00002": by_runbook,
             "/jobs?status=waiting,failed": ("ix_jobs_live", "ix_jobs_workspace_id_unsuccessful"), "/jobs?status=queued": ("ix_jobs_live",),
             "/jobs?status=stopped": ("ix_jobs_workspace_id_unsuccessful",), f"/jobs?parent={parent}": by_parent, f"/jobs/{parent}": by_parent}

    reads: dict[str, list[str]] = {}
    for path in pages:
        with counting(rt.db.engine) as statements:
            answer = api.get(path)
        assert answer.status_code == 200, (path, answer.get_json())
        reads[path] = [plan(rt, sql, parameters) for sql, parameters, _ in statements if "FROM jobs" in sql]

    assert [job["runbook"]["name"] for job in api.get("/jobs?runbook=parent").get_json()["items"]] == ["parent"]
    assert {job["runbook"]["name"] for job in api.get("/jobs?runbook=RB-00002").get_json()["items"]} == {"child"}
    assert [job["status"] for job in api.get("/jobs?status=waiting,failed").get_json()["items"]] == ["waiting"] * 3  # busy, child, parent
    assert len(api.get(f"/jobs?parent={parent}").get_json()["items"]) == 1
    for path, indexes in pages.items():
        assert reads[path], path
        for index in indexes:
            assert any(index in found for found in reads[path]), (path, index, reads[path])
        for found in reads[path]:
            assert not scans(found, "jobs"), (path, found)


def test_the_audit_log_of_anything_but_a_job_is_read_through_its_own_index(api, rt):
    """Among thousands of entries about jobs, a runbook's few are read by target; a job's, which that index leaves out, still come."""
    publish(api, "busy")
    job_uuid = api.post("/runbooks/busy/jobs", json={}).get_json()["job"]["uuid"]
    with rt.db.write() as session:
        connection = session.connection()
        row = dict(connection.execute(select(AuditEntry.__table__).where(AuditEntry.target == job_uuid)).first()._mapping)
        del row["id"]
        insert_rows(connection, AuditEntry.__table__, [{**row, "target": str(uuid4())} for _ in range(FINISHED)])
    assert api.patch("/runbooks/busy", json={"title": "Busy again"}).status_code == 200

    with counting(rt.db.engine) as statements:
        answer = api.get("/audit", query_string={"target": "RB-00001"})

    [found] = [plan(rt, sql, parameters) for sql, parameters, _ in statements if "FROM audit_entries" in sql]
    assert answer.status_code == 200, answer.get_json()
    assert [e["action"] for e in answer.get_json()["items"]] == ["runbook.create", "runbook.publish", "runbook.edit"]
    assert "ix_audit_entries_not_about_a_job" in found, found
    assert not scans(found, "audit_entries"), found
    assert [e["action"] for e in api.get("/audit", query_string={"target": job_uuid}).get_json()["items"]] == ["job.create"]
