"""A job worker's claims and heartbeats read the jobs due or held through their indexes, however many finished jobs the store holds."""
from __future__ import annotations

from uuid import uuid4

from sqlalchemy import select

from runner.db import insert_rows
from runner.engine.driver import claim, claim_and_move
from runner.engine.worker import renew_leases
from runner.models import Job
from runner.runtime import Runtime
from tests.runner.helpers import counting, plan, settings_on_each_store

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


def test_claiming_reads_due_jobs_through_their_index_not_every_job(api, rt):
    """Also on a table PostgreSQL has not analyzed since it grew: the idle workers' look for work scans no table."""
    assert api.post("/runbooks", json={"name": "one", "title": "One", "callable": True, "steps": [{"title": "Check"}]}).status_code == 201
    assert api.post("/runbooks/one/publish").status_code == 200
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
        assert "SCAN jobs" not in found and "Seq Scan on jobs" not in found, found


def test_a_workers_heartbeat_reads_only_the_jobs_it_holds(api, rt, clock):
    """Renewing leases every few seconds must not read every job ever run (on SQLite it holds the writer meanwhile)."""
    assert api.post("/runbooks", json={"name": "one", "title": "One", "callable": True, "steps": [{"title": "Check"}]}).status_code == 201
    assert api.post("/runbooks/one/publish").status_code == 200
    held = api.post("/runbooks/one/jobs", json={}).get_json()["job"]["uuid"]
    finished_jobs(rt, held, FINISHED)
    [leased] = claim(rt, "w", 8)
    clock.advance(5)

    with counting(rt.db.engine) as statements:
        renewed = renew_leases(rt, Job, "w")

    [found] = [plan(rt, sql, parameters) for sql, parameters, _ in statements if sql.startswith("UPDATE jobs")]
    assert (leased, renewed) == (held, 1)
    assert "ix_jobs_leased" in found, found
    assert "SCAN jobs" not in found and "Seq Scan on jobs" not in found, found
