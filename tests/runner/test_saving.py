"""``write_plainly``: jobs and step events saved with prebuilt statements before each flush, stored exactly as the ORM stores them."""
from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import uuid4

import pytest
from sqlalchemy import String, cast, delete, event, inspect, select
from sqlalchemy.exc import IntegrityError, PendingRollbackError
from sqlalchemy.orm.attributes import flag_modified
from sqlalchemy.orm.exc import StaleDataError

from runner.models import Job, StepEvent
from runner.models.saving import write_plainly
from runner.runtime import Runtime
from tests.conftest import Api
from tests.runner.helpers import create_runbook, settings_on_each_store

# Each test runs on SQLite and on PostgreSQL: the two drivers take their parameters differently.
settings = settings_on_each_store

AT = datetime(2026, 3, 2, 13, 0, tzinfo=timezone.utc)
# Marks, among the statements run, where the ORM's own flush began (write_plainly has run by then).
FLUSH = "-- the ORM's flush"
# A bound parameter as each driver takes it: ``?`` (SQLite), ``%(name)s`` with a cast (psycopg).
PARAM = r"(?:\?|%\(\w+\)s(?:::[A-Z ]+)?)"
# The step event columns that are NULL unless set.
NULL_UNLESS_SET = ("completed_at", "note", "actor", "wake_at", "approved_by", "approved_at")


# --- helpers ------------------------------------------------------------------------------------------


@contextmanager
def statements(rt: Runtime) -> Iterator[list[str]]:
    """The SQL run on the store, with ``FLUSH`` where the ORM's flush began (a listener added after ``write_plainly``)."""
    seen: list[str] = []

    def run(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        seen.append(" ".join(statement.split()))

    def flush(session, flush_context, instances) -> None:  # noqa: ANN001
        seen.append(FLUSH)

    event.listen(rt.db.engine, "before_cursor_execute", run)
    event.listen(rt.db._writers, "before_flush", flush)
    try:
        yield seen
    finally:
        event.remove(rt.db.engine, "before_cursor_execute", run)
        event.remove(rt.db._writers, "before_flush", flush)


@contextmanager
def orm_only(rt: Runtime) -> Iterator[None]:
    """Write sessions flushed by the ORM alone, as before ``write_plainly``."""
    event.remove(rt.db._writers, "before_flush", write_plainly)
    try:
        yield
    finally:
        event.listen(rt.db._writers, "before_flush", write_plainly)


def columns(obj: Job | StepEvent) -> dict[str, Any]:
    """Every column attribute of ``obj``, as the session holds it."""
    return {key: getattr(obj, key) for key in type(obj).__table__.c.keys()}


def stored(rt: Runtime, model: type[Job | StepEvent], id_: int) -> dict[str, Any] | None:
    """The row of ``model`` with ``id_``, read with a fresh Core SELECT (None if there is none)."""
    table = model.__table__
    with rt.db.connect() as connection:
        row = connection.execute(select(table).where(table.c.id == id_)).mappings().first()
    return dict(row) if row is not None else None


def new_step_event(job_id: int, order: int, **fields: Any) -> StepEvent:
    """A step event as the engine makes one: every column without a NULL default given."""
    return StepEvent(**{"job_id": job_id, "order": order, "title": f"Step {order}", "status": "running", "started_at": AT,
                        "output": {}, "attempts": 0, "inflight": False, "overdue_emitted": False, **fields})


def publish(api: Api, steps: list[dict[str, Any]]) -> str:
    return create_runbook(api, "Restart the primary database", status="published", steps=steps, callable=True)["key"]


def start(api: Api, key: str) -> str:
    response = api.post(f"/runbooks/{key}/jobs", json={})
    assert response.status_code == 202, response.get_json()
    return response.get_json()["job"]["uuid"]


def step_done(api: Api, job_uuid: str, order: int, note: str | None = None) -> None:
    response = api.post(f"/jobs/{job_uuid}/steps/{order}/done", json={"note": note})
    assert response.status_code == 200, response.get_json()


def job_id_of(rt: Runtime, job_uuid: str) -> int:
    with rt.db.connect() as connection:
        return connection.execute(select(Job.id).where(Job.uuid == job_uuid)).scalar_one()


@pytest.fixture
def started(rt, api, worker) -> tuple[int, int]:
    """A job the worker started, waiting at the first of two manual steps: its id and that of its step event."""
    uuid = start(api, publish(api, [{"title": "Drain traffic"}, {"title": "Restart"}]))
    worker.run_until_idle()
    job_id = job_id_of(rt, uuid)
    with rt.db.connect() as connection:
        event_id = connection.execute(select(StepEvent.id).where(StepEvent.job_id == job_id)).scalar_one()
    return job_id, event_id


# --- 1. what the engine stores ------------------------------------------------------------------------


def _run_through(rt: Runtime, api: Api, worker, clock, key: str) -> str:  # noqa: ANN001
    """Run a job of ``key`` (manual, http, wait, manual steps) to its end, the clock moving as it goes."""
    uuid = start(api, key)
    worker.run_until_idle()
    step_done(api, uuid, 1, note="drained")
    worker.run_until_idle()
    clock.advance(31)
    worker.run_until_idle()
    step_done(api, uuid, 4)
    worker.run_until_idle()
    with rt.db.connect() as connection:
        assert connection.execute(select(Job.status).where(Job.uuid == uuid)).scalar_one() == "succeeded"
    return uuid


def steps_of_every_kind(server) -> list[dict[str, Any]]:  # noqa: ANN001
    return [{"title": "Drain traffic"}, {"title": "Call the service", "action": {"type": "http", "url": server.url + "/ok"}},
            {"title": "Let it settle", "action": {"type": "wait", "seconds": 30}}, {"title": "Check the dashboards"}]


def test_rows_of_a_job_moved_by_the_engine_equal_the_objects_its_sessions_held(rt, api, worker, clock, server):
    held: dict[tuple[type, int], dict[str, Any]] = {}

    def keep(session) -> None:  # noqa: ANN001
        for obj in session.identity_map.values():
            if isinstance(obj, (Job, StepEvent)):
                held[(type(obj), obj.id)] = columns(obj)

    event.listen(rt.db._writers, "after_commit", keep)
    try:
        job_id = job_id_of(rt, _run_through(rt, api, worker, clock, publish(api, steps_of_every_kind(server))))
    finally:
        event.remove(rt.db._writers, "after_commit", keep)

    # The only job there is, and its four step events, each as the last session that held it committed it.
    assert sorted((model.__name__, attributes.get("job_id", id_)) for (model, id_), attributes in held.items()) == \
        [("Job", job_id)] + [("StepEvent", job_id)] * 4
    for (model, id_), attributes in held.items():
        assert stored(rt, model, id_) == attributes, model.__name__


def test_a_job_moved_by_the_engine_is_stored_as_the_orm_alone_stores_it(rt, api, worker, clock, server):
    key = publish(api, steps_of_every_kind(server))
    begin = clock.now()

    def rows(job_uuid: str) -> list[dict[str, Any]]:
        """The job's row and its step events', without what differs from job to job (ids, and the http call's latency)."""
        job_id = job_id_of(rt, job_uuid)
        job = {k: v for k, v in stored(rt, Job, job_id).items() if k not in ("id", "uuid", "root_job_uuid")}
        with rt.db.connect() as connection:
            events = connection.execute(select(StepEvent.__table__).where(StepEvent.job_id == job_id).order_by(StepEvent.order))
            steps = [{**{k: v for k, v in row.items() if k not in ("id", "job_id")},
                      "output": {k: v for k, v in row["output"].items() if k != "latency_ms"}} for row in events.mappings()]
        return [job, *steps]

    plainly = rows(_run_through(rt, api, worker, clock, key))
    clock.set(begin)
    with orm_only(rt):
        by_the_orm = rows(_run_through(rt, api, worker, clock, key))

    assert plainly == by_the_orm
    assert plainly[0]["ended_at"] == begin + timedelta(seconds=31) and plainly[1]["note"] == "drained"
    assert plainly[2]["output"] == {"status": 200, "attempts": 1, "method": "GET", "host": "127.0.0.1",
                                    "response_excerpt": '{"path": "/ok", "status": 200}'}


# --- 2. only what changed, before the ORM's flush ----------------------------------------------------


@pytest.mark.parametrize(("model", "changes", "set_clause"), [
    (Job, {"message": "Checked by hand"}, f"message={PARAM}"),
    (StepEvent, {"note": "Traffic drained", "completed_at": AT}, f"completed_at={PARAM}, note={PARAM}"),
], ids=["job", "step-event"])
def test_a_change_is_one_update_of_the_changed_columns_and_the_orm_flushes_nothing(rt, started, model, changes, set_clause):
    job_id, event_id = started
    table = model.__tablename__
    with rt.db.write() as session:
        obj = session.get(model, job_id if model is Job else event_id)
        for name, value in changes.items():
            setattr(obj, name, value)
        with statements(rt) as first:
            session.flush()
        with statements(rt) as second:
            session.flush()
        assert not inspect(obj).modified

    [update, flush] = first
    assert re.fullmatch(rf"UPDATE {table} SET {set_clause} WHERE {table}\.id = {PARAM}", update), update
    assert flush == FLUSH  # the update ran before it: the ORM's flush had nothing left to write
    assert second == []
    assert {name: stored(rt, model, obj.id)[name] for name in changes} == changes


# --- 3. new step events ------------------------------------------------------------------------------


def test_a_new_step_event_is_inserted_and_made_persistent_with_its_id(rt, started):
    job_id, _ = started
    with rt.db.write() as session:
        ev = new_step_event(job_id, 2, output={"checked": [1, None]})
        session.add(ev)
        with statements(rt) as seen:
            session.flush()
            held = columns(ev)  # the columns left out read None, without a SELECT

        assert inspect(ev).persistent and isinstance(ev.id, int)
        assert session.get(StepEvent, ev.id) is ev
    assert len(seen) == 2 and seen[0].startswith("INSERT INTO step_events") and seen[1] == FLUSH, seen
    assert {name: held[name] for name in NULL_UNLESS_SET} == dict.fromkeys(NULL_UNLESS_SET)
    assert stored(rt, StepEvent, ev.id) == held


# --- 4. a row that is gone ---------------------------------------------------------------------------


def test_an_update_that_matches_no_row_raises_stale_data_and_nothing_is_kept(rt, started):
    job_id, event_id = started
    job_before, event_before = stored(rt, Job, job_id), stored(rt, StepEvent, event_id)

    with pytest.raises(StaleDataError, match=rf"StepEvent {event_id} matched 0 of 1 rows"), rt.db.write() as session:
        job, ev = session.get(Job, job_id), session.get(StepEvent, event_id)
        session.connection().execute(delete(StepEvent.__table__).where(StepEvent.__table__.c.id == event_id))
        job.message, ev.note = "changed", "changed"
        session.flush()

    assert (stored(rt, Job, job_id), stored(rt, StepEvent, event_id)) == (job_before, event_before)


# --- 5. what is left to the ORM ----------------------------------------------------------------------


def test_a_job_made_through_the_orm_goes_in_before_its_new_step_events(rt, started):
    job_id, _ = started
    with rt.db.write() as session:
        template = columns(session.get(Job, job_id))
        job = Job(**{**template, "id": job_id + 1000, "uuid": str(uuid4()), "status": "running", "cursor": 1})
        ev = new_step_event(job.id, 1)
        session.add_all([ev, job])
        session.flush()
        assert inspect(ev).persistent and inspect(job).persistent

    assert stored(rt, Job, job.id)["uuid"] == job.uuid
    assert stored(rt, StepEvent, ev.id)["job_id"] == job.id


def test_a_new_step_event_without_its_defaulted_columns_gets_their_defaults(rt, started):
    job_id, _ = started
    with rt.db.write() as session:
        bare = StepEvent(job_id=job_id, order=2, title="Restart", status="running", started_at=AT)
        session.add(bare)
        with statements(rt) as seen:
            session.flush()

    assert seen[0] == FLUSH  # the ORM inserted it
    row = stored(rt, StepEvent, bare.id)
    assert (row["output"], row["attempts"], row["inflight"], row["overdue_emitted"], row["note"]) == ({}, 0, False, False, None)


@pytest.mark.filterwarnings("ignore:The `objects` parameter of `Session.flush` is deprecated")
def test_a_flush_of_chosen_objects_is_left_to_the_orm(rt, started):
    job_id, event_id = started
    with rt.db.write() as session:
        job, ev = session.get(Job, job_id), session.get(StepEvent, event_id)
        job.message, ev.note = "flushed alone", "flushed at commit"
        with statements(rt) as seen:
            session.flush([job])
        assert seen[0] == FLUSH and any(sql.startswith("UPDATE jobs SET message=") for sql in seen), seen
        assert not inspect(job).modified and inspect(ev).modified

    assert stored(rt, Job, job_id)["message"] == "flushed alone"
    assert stored(rt, StepEvent, event_id)["note"] == "flushed at commit"


def test_a_flush_that_deletes_is_left_to_the_orm(rt, started):
    job_id, event_id = started
    with rt.db.write() as session:
        job = session.get(Job, job_id)
        session.delete(session.get(StepEvent, event_id))
        job.cursor = 0
        with statements(rt) as seen:
            session.flush()
        assert seen[0] == FLUSH and len(seen) == 3, seen

    assert stored(rt, StepEvent, event_id) is None and stored(rt, Job, job_id)["cursor"] == 0


# --- 6. JSON and timestamps --------------------------------------------------------------------------


def test_json_and_aware_timestamps_are_stored_as_the_orm_stores_them(rt, api, worker):
    output = {"nested": {"list": [1, None, {"deep": None}], "none": None}, "text": 'a "quoted" wörd'}
    later = datetime(2026, 3, 2, 15, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    key = publish(api, [{"title": "Drain traffic"}])
    ids = [job_id_of(rt, start(api, key)) for _ in range(2)]
    worker.run_until_idle()
    table = StepEvent.__table__

    def change(job_id: int) -> None:
        with rt.db.write() as session:
            ev = session.scalars(select(StepEvent).where(StepEvent.job_id == job_id)).one()
            ev.output, ev.completed_at, ev.approved_at = output, later, None
            session.get(Job, job_id).parameters = output

    def raw(job_id: int) -> tuple[Any, ...]:
        """What the database holds: the JSON's text and the time's text, besides the values read back."""
        query = select(table.c.output, table.c.completed_at, cast(table.c.output, String), cast(table.c.completed_at, String),
                       table.c.approved_at.is_(None), cast(Job.parameters, String)).join(Job.__table__).where(table.c.job_id == job_id)
        with rt.db.connect() as connection:
            return tuple(connection.execute(query).one())

    change(ids[0])
    with orm_only(rt):
        change(ids[1])

    plainly = raw(ids[0])
    assert plainly[:2] == (output, later) and plainly[1].tzinfo == timezone.utc
    assert plainly == raw(ids[1])


# --- 7. as the ORM would: unchanged values, defaults, ids, order, rollback ---------------------------


def test_a_column_set_to_the_value_it_had_is_not_written(rt, started):
    job_id, event_id = started
    with rt.db.write() as session:
        job, ev = session.get(Job, job_id), session.get(StepEvent, event_id)
        job.lease_owner, job.parameters, ev.inflight, ev.output = job.lease_owner, dict(job.parameters), False, dict(ev.output)
        job.message = "only this"
        with statements(rt) as seen:
            session.flush()
        assert not inspect(job).modified and not inspect(ev).modified

    assert len(seen) == 2 and re.fullmatch(rf"UPDATE jobs SET message={PARAM} WHERE jobs\.id = {PARAM}", seen[0]) and seen[1] == FLUSH, seen


def test_a_new_step_event_with_an_id_or_a_defaulted_column_set_to_none_is_left_to_the_orm(rt, started):
    job_id, _ = started
    with rt.db.write() as session:
        numbered = new_step_event(job_id, 2, id=9_000)
        defaulted = new_step_event(job_id, 3, attempts=None)
        session.add_all([numbered, defaulted])
        with statements(rt) as seen:
            session.flush()

    assert seen[0] == FLUSH, seen
    assert numbered.id == 9_000 and stored(rt, StepEvent, 9_000)["order"] == 2
    assert stored(rt, StepEvent, defaulted.id)["attempts"] == 0


def test_updates_go_jobs_first_then_step_events_each_by_id(rt, api, worker):
    key = publish(api, [{"title": "Drain traffic"}])
    ids = sorted(job_id_of(rt, start(api, key)) for _ in range(2))
    worker.run_until_idle()
    written: list[tuple[str, Any]] = []
    statements = 0

    def run(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        # Each row's id is its last parameter (SQLite) or the one named id_ (psycopg); an executemany has a row per job.
        nonlocal statements
        statements += 1
        for row in parameters if executemany else [parameters]:
            written.append((statement.split()[1], row["id_"] if isinstance(row, dict) else row[-1]))

    with rt.db.write() as session:
        events = sorted(session.scalars(select(StepEvent).where(StepEvent.job_id.in_(ids))), key=lambda ev: ev.id)
        jobs = [session.get(Job, job_id) for job_id in ids]
        events[1].note, jobs[1].message, events[0].note, jobs[0].message = "ordered", "ordered", "ordered", "ordered"
        jobs[1].cursor = 7  # a different set of columns: its own statement, after the first job's
        event.listen(rt.db.engine, "before_cursor_execute", run)
        try:
            session.flush()
        finally:
            event.remove(rt.db.engine, "before_cursor_execute", run)

    assert written == [("jobs", ids[0]), ("jobs", ids[1]), ("step_events", events[0].id), ("step_events", events[1].id)]
    assert statements == 3  # the two step events, changed alike, went in together


def test_a_dirty_step_event_pointing_at_a_job_made_through_the_orm_is_left_to_the_orm(rt, started):
    job_id, event_id = started
    with rt.db.write() as session:
        template, ev = columns(session.get(Job, job_id)), session.get(StepEvent, event_id)
        job = Job(**{**template, "id": job_id + 1000, "uuid": str(uuid4())})
        session.add(job)
        ev.job_id = job.id
        with statements(rt) as seen:
            session.flush()

    assert seen[0] == FLUSH, seen
    assert stored(rt, StepEvent, event_id)["job_id"] == job.id


def test_a_rollback_undoes_in_memory_what_it_undoes_in_the_store(rt, started):
    job_id, _ = started
    with pytest.raises(RuntimeError), rt.db.write() as session:
        job = session.get(Job, job_id)
        job.message = "rolled back"
        ev = new_step_event(job_id, 2)
        session.add(ev)
        session.flush()
        assert inspect(ev).persistent
        raise RuntimeError("the transaction fails after the flush")

    # As after the ORM's own flush: the new step event is transient again with its values, the job's change is forgotten.
    assert inspect(ev).transient and ev.title == "Step 2"
    assert "message" in inspect(job).expired_attributes or "message" not in inspect(job).dict
    assert stored(rt, Job, job_id)["message"] is None


def test_jobs_started_together_are_updated_with_one_statement(rt, api, worker):
    key = publish(api, [{"title": "Drain traffic"}])
    uuids = [start(api, key) for _ in range(3)]
    with statements(rt) as seen:
        worker.run_until_idle()

    assert len([sql for sql in seen if sql.startswith("UPDATE jobs SET")]) == 1, seen
    assert len([sql for sql in seen if sql.startswith("INSERT INTO step_events")]) == 1, seen
    with rt.db.connect() as connection:
        assert connection.execute(select(Job.status).where(Job.uuid.in_(uuids))).scalars().all() == ["waiting"] * 3
        assert sorted(connection.execute(select(Job.uuid).join(StepEvent, StepEvent.job_id == Job.id)
                                         .where(Job.uuid.in_(uuids), StepEvent.order == 1)).scalars()) == sorted(uuids)


def test_a_group_of_updates_that_misses_a_row_raises_stale_data_and_nothing_is_kept(rt, api, worker):
    key = publish(api, [{"title": "Drain traffic"}])
    ids = sorted(job_id_of(rt, start(api, key)) for _ in range(2))
    worker.run_until_idle()
    before = [stored(rt, Job, job_id) for job_id in ids]

    with pytest.raises(StaleDataError, match=rf"UPDATE of Job {ids[0]}, {ids[1]} matched 1 of 2 rows"), rt.db.write() as session:
        jobs = [session.get(Job, job_id) for job_id in ids]
        session.connection().execute(delete(StepEvent.__table__).where(StepEvent.__table__.c.job_id == ids[1]))
        session.connection().execute(delete(Job.__table__).where(Job.__table__.c.id == ids[1]))
        for job in jobs:
            job.message = "changed"
        session.flush()

    assert [stored(rt, Job, job_id) for job_id in ids] == before


def test_new_step_events_of_several_jobs_get_the_ids_of_their_own_rows(rt, api, worker):
    key = publish(api, [{"title": "Drain traffic"}, {"title": "Restart"}])
    ids = [job_id_of(rt, start(api, key)) for _ in range(3)]
    worker.run_until_idle()
    with rt.db.write() as session:
        events = [new_step_event(job_id, 2, title=f"Restart {job_id}") for job_id in reversed(ids)]
        session.add_all(events)
        session.flush()

    for ev in events:
        row = stored(rt, StepEvent, ev.id)
        assert (row["job_id"], row["order"], row["title"]) == (ev.job_id, 2, f"Restart {ev.job_id}")


def test_a_failed_flush_must_be_rolled_back_before_the_session_is_used_again(rt, started):
    job_id, _ = started
    session = rt.db._writers()
    try:
        job = session.get(Job, job_id)
        job.message = "first"
        session.add_all([new_step_event(job_id, 2), new_step_event(job_id, 2)])  # the same step twice
        with pytest.raises(IntegrityError):
            session.flush()
        with pytest.raises(PendingRollbackError):
            session.commit()
    finally:
        session.rollback()
        session.close()

    assert stored(rt, Job, job_id)["message"] is None


def test_a_value_changed_in_place_and_flagged_is_written(rt, started):
    _, event_id = started
    with rt.db.write() as session:
        ev = session.get(StepEvent, event_id)
        ev.output["checked"] = True
        flag_modified(ev, "output")

    assert stored(rt, StepEvent, event_id)["output"] == {"checked": True}
