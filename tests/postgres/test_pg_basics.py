"""The same product on PostgreSQL: migrations, a full job, deliveries, schedules, idempotency and the feed under load."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select

from runner.engine import JobWorker
from runner.migrate import current_revision, head_revision, objects_of
from runner.models import Base, Job, Workspace
from runner.scheduling.scheduler import ScheduleRunner
from webhooks.delivery import DeliveryWorker


def _published(api, body):
    assert api.post("/runbooks", json=body).status_code == 201
    assert api.post(f"/runbooks/{body['name']}/publish").status_code == 200


def test_migrations_reach_head_and_match_the_models(pg_rt):
    assert current_revision(pg_rt.db.engine) == head_revision()
    with pg_rt.db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"include_object": objects_of("postgresql")}), Base.metadata)
    assert diff == []


def test_a_job_with_http_child_and_manual_steps_runs_on_postgres(pg_rt, pg_api, server):
    _published(pg_api, {"name": "child", "title": "Child", "callable": True,
                        "steps": [{"title": "Ping", "action": {"type": "http", "url": server.url + "/child"}}]})
    _published(pg_api, {"name": "parent", "title": "Parent", "callable": True, "steps": [
        {"title": "Call", "action": {"type": "http", "method": "POST", "url": server.url + "/parent", "body": {"a": 1}}},
        {"title": "Run the child", "action": {"type": "runbook", "runbook": "child"}},
        {"title": "Confirm with the team"},
    ]})
    job = pg_api.post("/runbooks/parent/jobs", json={}).get_json()["job"]
    JobWorker(pg_rt, worker_id="w", threads=1).run_until_idle()
    assert pg_api.get(f"/jobs/{job['uuid']}").get_json()["waiting_for"] == "operator"
    assert pg_api.post(f"/jobs/{job['uuid']}/steps/3/done", json={"note": "ok"}).status_code == 200
    JobWorker(pg_rt, worker_id="w", threads=1).run_until_idle()
    final = pg_api.get(f"/jobs/{job['uuid']}").get_json()
    assert final["status"] == "succeeded"
    assert (server.hits["/parent"], server.hits["/child"]) == (1, 1)
    seqs = [e["seq"] for e in pg_api.get(f"/jobs/{job['uuid']}/events").get_json()["items"]]
    assert seqs == list(range(1, len(seqs) + 1))


def test_a_flow_backed_job_succeeds_when_its_delivery_is_acknowledged_on_postgres(pg_rt, pg_api, server):
    _published(pg_api, {"name": "flow", "title": "Flow", "callable": True})
    hook = pg_api.post("/hooks", json={"events": ["runbook.invoked"], "runbooks": ["flow"], "target_url": server.url + "/flow"})
    assert hook.status_code == 201
    job = pg_api.post("/runbooks/flow/jobs", json={}).get_json()["job"]
    jobs, deliveries = JobWorker(pg_rt, worker_id="w", threads=1), DeliveryWorker(pg_rt, worker_id="d")
    jobs.run_until_idle()
    assert pg_api.get(f"/jobs/{job['uuid']}").get_json()["waiting_for"] == "delivery"
    deliveries.run_until_idle()
    jobs.run_until_idle()
    assert pg_api.get(f"/jobs/{job['uuid']}").get_json()["status"] == "succeeded"
    assert server.hits["/flow"] == 1


def test_a_schedule_fires_on_postgres(pg_rt, pg_api, clock):
    clock.set(datetime(2026, 5, 4, 8, 59, 30, tzinfo=timezone.utc))
    _published(pg_api, {"name": "hourly", "title": "Hourly", "callable": True, "steps": [{"title": "Look"}]})
    assert pg_api.post("/runbooks/hourly/schedules", json={"cron": "0 * * * *"}).status_code == 201
    runner = ScheduleRunner(pg_rt)
    assert runner.tick() == []
    clock.set(datetime(2026, 5, 4, 9, 0, 0, tzinfo=timezone.utc))
    fired = runner.tick()
    assert len(fired) == 1
    assert pg_api.get(f"/jobs/{fired[0]}").get_json()["triggered_by"] == "schedule"


def test_concurrent_invocations_with_one_idempotency_key_make_one_job(pg_rt, pg_api):
    _published(pg_api, {"name": "once", "title": "Once", "callable": True, "steps": [{"title": "Look"}]})
    answers: list[str] = []

    def invoke() -> None:
        response = pg_api.post("/runbooks/once/jobs", json={}, headers={"Idempotency-Key": "same-key"})
        answers.append(response.get_json()["job"]["uuid"])

    threads = [threading.Thread(target=invoke) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(answers) == 8 and len(set(answers)) == 1
    with pg_rt.db.read() as session:
        assert session.scalar(select(func.count(Job.id))) == 1


def test_the_feed_neither_skips_nor_repeats_events_while_jobs_are_written_on_postgres(pg_rt, pg_api):
    _published(pg_api, {"name": "busy", "title": "Busy", "callable": True, "steps": [{"title": "Look"}]})
    writers_done = threading.Event()

    def write(count: int) -> None:
        for _ in range(count):
            assert pg_api.post("/runbooks/busy/jobs", json={}).status_code == 202

    threads = [threading.Thread(target=write, args=(20,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    seen: list[int] = []
    cursor = None

    def page() -> list[dict]:
        nonlocal cursor
        query = "/events?limit=7" + (f"&after={cursor}" if cursor else "")
        body = pg_api.get(query).get_json()
        cursor = body["next_cursor"]
        return body["items"]

    while not writers_done.is_set():
        seen += [e["id"] for e in page()]
        if not any(t.is_alive() for t in threads):
            writers_done.set()
    # An empty page means nothing is visible yet: the horizon waits for every transaction open on the server, those
    # of other databases' tests included. Page until every event has come, or long enough to call one skipped.
    deadline = time.monotonic() + 10
    while len(seen) < 4 * 20 * 2 and time.monotonic() < deadline:
        items = page()
        seen += [e["id"] for e in items]
        if not items:
            time.sleep(0.05)
    with pg_rt.db.read() as session:
        from runner.models import Event

        all_ids = set(session.scalars(select(Event.id)))
    assert len(seen) == len(set(seen)), "an event was returned twice"
    assert set(seen) == all_ids, "an event was skipped"
    assert len(all_ids) == 4 * 20 * 2


def test_a_filtered_poll_passes_no_event_of_a_transaction_still_open_on_postgres(pg_rt, pg_api, pg_url):
    """The cursor of a poll that found nothing moves past what it read, but never past a transaction still writing."""
    import psycopg

    _published(pg_api, {"name": "watched", "title": "Watched", "callable": True, "steps": [{"title": "Look"}]})
    _published(pg_api, {"name": "busy", "title": "Busy", "callable": True, "steps": [{"title": "Look"}]})
    with pg_rt.db.read() as session:
        workspace_id = session.scalar(select(Workspace.id).where(Workspace.slug == "acme"))
    dsn = pg_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as slow:
        # A writer that began before the others and commits after them: its event gets the oldest transaction id.
        stopped = slow.execute("INSERT INTO events (workspace_id, type, runbook_key, payload, created_at) "
                               "VALUES (%s, 'job.stopped_by_system', 'RB-00001', '{}', now()) RETURNING id", (workspace_id,)).fetchone()[0]
        for _ in range(3):
            assert pg_api.post("/runbooks/busy/jobs", json={}).status_code == 202
        body = pg_api.get("/events?type=job.stopped_by_system").get_json()
        assert body["items"] == []
        slow.commit()

    later = pg_api.get(f"/events?type=job.stopped_by_system&after={body['next_cursor']}").get_json()

    assert [(e["id"], e["type"]) for e in later["items"]] == [(stopped, "job.stopped_by_system")]
