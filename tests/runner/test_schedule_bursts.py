"""Many cron ticks at once: fired in batches, they leave exactly what firing them one by one leaves."""
from __future__ import annotations

import gc
import json
from typing import Any

import pytest
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import select

from runner.clock import ManualClock
from runner.engine import bulk, invoke
from runner.engine.worker import JobWorker
from runner.models import AuditEntry, Event, Job, Schedule
from runner.runtime import JOBS_DUE, Runtime
from runner.scheduling import firing
from runner.scheduling.scheduler import APSCHEDULER_TABLE, ScheduleRunner
from tests.conftest import Api
from tests.runner.helpers import create_runbook, settings_on_each_store
from tests.runner.test_schedules import PARAMS, START, UTC, at, create_schedule, jobs, patch

TICK = at(2026, 3, 2, 13, 0)


# Every test here runs on SQLite and on PostgreSQL: the batch statements differ in how each database runs them.
settings = settings_on_each_store


@pytest.fixture
def key(api: Api, clock: ManualClock) -> str:
    """A published callable runbook with PARAMS, created at START."""
    clock.set(START)
    return create_runbook(api, "Rotate the TLS certificates", status="published", name="rotate-tls", callable=True,
                          parameters=PARAMS)["key"]


def _written(rt: Runtime, job_uuid: str) -> dict[str, Any]:
    """The job row, its events and its audit entries, as stored."""
    with rt.db.read() as session:
        job = session.scalar(select(Job).where(Job.uuid == job_uuid))
        events = session.scalars(select(Event).where(Event.job_id == job.id).order_by(Event.seq)).all()
        entries = session.scalars(select(AuditEntry).where(AuditEntry.target == job_uuid)).all()
        return {
            "job": {c.name: getattr(job, c.key) for c in Job.__table__.columns if c.name != "id"},
            "events": [{"seq": e.seq, "type": e.type, "runbook_key": e.runbook_key, "payload": e.payload, "created_at": e.created_at}
                       for e in events],
            "audit": [{"actor": a.actor, "role": a.role, "action": a.action, "source": a.source, "detail": a.detail, "at": a.at}
                      for a in entries],
        }


def _anonymous(written: dict[str, Any], job_uuid: str, schedule_id: str) -> dict[str, Any]:
    """What was written, with the job's uuid and the schedule's id replaced, so two fires of two schedules compare."""
    text = json.dumps(written, default=str, sort_keys=True)
    return json.loads(text.replace(job_uuid, "<job>").replace(schedule_id, "<schedule>"))


def _fell_back(caplog: pytest.LogCaptureFixture) -> bool:
    """Whether a batch failed as a whole and its ticks were fired one by one."""
    return any("firing them one by one" in record.getMessage() for record in caplog.records)


def _runner(rt: Runtime) -> ScheduleRunner:
    runner = ScheduleRunner(rt)
    runner.tick()
    return runner


def _narrow_service(api: Api, key: str, allowed: list[str]) -> None:
    """Change the runbook so that only the given services are valid parameters."""
    narrower = {**PARAMS, "properties": {**PARAMS["properties"], "service": {"type": "string", "enum": allowed}}}
    changed = api.patch(f"/runbooks/{key}", json={"parameters": narrower})
    assert changed.status_code == 200, changed.get_json()


def test_a_batch_writes_the_same_job_events_and_audit_as_firing_alone(api, key, rt, clock):
    alone = create_schedule(api, key, cron="0 13 * * *")
    together = [create_schedule(api, key, cron="0 13 * * *") for _ in range(3)]
    clock.set(TICK)

    alone_uuid = firing.fire(rt, alone["id"], TICK)
    rt.signals[JOBS_DUE].clear()
    batch = firing.fire_many(rt, [(s["id"], TICK) for s in together])

    expected = _anonymous(_written(rt, alone_uuid), alone_uuid, alone["id"])
    assert expected["job"]["status"] == "queued" and [e["type"] for e in expected["events"]] == ["job.created", "runbook.invoked"]
    assert len(batch) == 3
    for schedule, job_uuid in zip(together, batch, strict=True):
        assert _anonymous(_written(rt, job_uuid), job_uuid, schedule["id"]) == expected
    assert rt.signals[JOBS_DUE].is_set()


def test_a_batch_records_each_fire_on_its_schedule(api, key, rt, clock):
    created = [create_schedule(api, key, cron="0 13 * * *") for _ in range(2)]
    clock.set(TICK)

    started = firing.fire_many(rt, [(s["id"], TICK) for s in created])

    with rt.db.read() as session:
        fired = {s.id: (s.last_fired_at, s.last_job_uuid) for s in session.scalars(select(Schedule))}
    assert fired == {s["id"]: (TICK, job_uuid) for s, job_uuid in zip(created, started, strict=True)}


def test_a_batch_mixing_valid_and_invalid_parameters_stops_only_the_invalid(api, key, rt, clock, caplog):
    valid = create_schedule(api, key, cron="0 13 * * *", parameters={"service": "db"})
    invalid = create_schedule(api, key, cron="0 13 * * *", parameters={"service": "api"})
    also_valid = create_schedule(api, key, cron="0 13 * * *", parameters={"service": "db"})
    _narrow_service(api, key, ["db"])
    clock.set(TICK)

    started = firing.fire_many(rt, [(s["id"], TICK) for s in (valid, invalid, also_valid)])

    states = [api.get(f"/jobs/{job_uuid}").get_json() for job_uuid in started]
    assert [(j["status"], j["stop_reason"], j["trigger_ref"]) for j in states] == [
        ("queued", None, valid["id"]), ("stopped", "params_invalid", invalid["id"]), ("queued", None, also_valid["id"])]
    assert "parameters.service" in states[1]["message"]
    stopped_events = api.get(f"/jobs/{started[1]}/events", query_string={"limit": 100}).get_json()["items"]
    assert [e["type"] for e in stopped_events][-1] == "job.stopped_by_system"
    assert not _fell_back(caplog)


def test_the_same_tick_fired_twice_starts_one_job(api, key, rt, clock):
    created = create_schedule(api, key, cron="0 13 * * *")
    clock.set(TICK)

    first = firing.fire_many(rt, [(created["id"], TICK)])
    again = firing.fire_many(rt, [(created["id"], TICK)])

    assert first == again
    assert [j["uuid"] for j in jobs(api, key)] == first


def test_the_same_tick_twice_in_one_batch_starts_one_job(api, key, rt, clock, caplog):
    created = create_schedule(api, key, cron="0 13 * * *")
    clock.set(TICK)

    started = firing.fire_many(rt, [(created["id"], TICK), (created["id"], TICK)])

    assert len(started) == 2 and started[0] == started[1]
    assert [j["uuid"] for j in jobs(api, key)] == started[:1]
    assert not _fell_back(caplog)


def test_a_batch_skips_a_disabled_schedule_and_fires_the_others(api, key, rt, clock):
    fired = create_schedule(api, key, cron="0 13 * * *")
    disabled = create_schedule(api, key, cron="0 13 * * *", enabled=False)
    clock.set(TICK)

    started = firing.fire_many(rt, [(disabled["id"], TICK), (fired["id"], TICK)])

    assert [j["trigger_ref"] for j in jobs(api, key)] == [fired["id"]]
    assert len(started) == 1


def test_parameters_broken_after_the_ticks_were_prepared_still_stop_the_job(api, key, rt, clock):
    create_schedule(api, key, cron="0 13 * * *", parameters={"service": "api"})
    runner = _runner(rt)
    assert runner.prepare(TICK) == 1

    _narrow_service(api, key, ["db"])
    [job_uuid] = runner.tick(TICK)

    job = api.get(f"/jobs/{job_uuid}").get_json()
    assert (job["status"], job["stop_reason"]) == ("stopped", "params_invalid")


def test_prepared_ticks_fire_the_same_jobs_as_unprepared_ones(api, key, rt, clock):
    prepared_schedule = create_schedule(api, key, cron="0 13 * * *")
    prepared = _runner(rt)
    prepared.prepare(TICK)
    clock.set(TICK)
    [prepared_uuid] = prepared.tick()
    plain_schedule = create_schedule(api, key, cron="0 14 * * *")
    plain = _runner(rt)

    [plain_uuid] = plain.tick(at(2026, 3, 2, 14, 0))

    prepared_job = _anonymous(_written(rt, prepared_uuid), prepared_uuid, prepared_schedule["id"])["job"]
    plain_job = _anonymous(_written(rt, plain_uuid), plain_uuid, plain_schedule["id"])["job"]
    assert {k: v for k, v in prepared_job.items() if k not in ("created_at", "next_run_at", "idempotency_key")} == \
        {k: v for k, v in plain_job.items() if k not in ("created_at", "next_run_at", "idempotency_key")}


def test_a_drafted_tick_writes_what_firing_alone_writes(api, key, rt, clock):
    alone = create_schedule(api, key, cron="0 13 * * *")
    drafted = create_schedule(api, key, cron="0 13 * * *")
    runner = _runner(rt)
    assert runner.prepare(TICK) == 2
    clock.set(TICK)
    alone_uuid = firing.fire(rt, alone["id"], TICK)

    fired = runner.tick()

    [drafted_uuid] = set(fired) - {alone_uuid}
    assert _anonymous(_written(rt, drafted_uuid), drafted_uuid, drafted["id"]) == \
        _anonymous(_written(rt, alone_uuid), alone_uuid, alone["id"])


def _count_built(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record each job's documents built at firing time (not taken from a draft)."""
    built: list[str] = []
    make = invoke.created_documents

    def counting(job: Any, trigger: Any) -> Any:
        built.append(job.uuid)
        return make(job, trigger)

    monkeypatch.setattr(invoke, "created_documents", counting)
    monkeypatch.setattr(bulk, "created_documents", counting)
    return built


def test_a_prepared_tick_is_fired_from_its_draft(api, key, rt, clock, monkeypatch):
    create_schedule(api, key, cron="0 13 * * *")
    runner = _runner(rt)
    runner.prepare(TICK)
    built = _count_built(monkeypatch)

    fired = runner.tick(TICK)

    assert len(fired) == 1 and built == []


def test_a_schedule_changed_after_its_tick_was_drafted_fires_with_its_new_parameters(api, key, rt, clock, monkeypatch):
    created = create_schedule(api, key, cron="0 13 * * *", parameters={"service": "api"})
    runner = _runner(rt)
    runner.prepare(TICK)
    patch(api, key, created["id"], parameters={"service": "db"})
    built = _count_built(monkeypatch)

    [job_uuid] = runner.tick(TICK)

    assert api.get(f"/jobs/{job_uuid}").get_json()["parameters"]["service"] == "db"
    assert built == [job_uuid]


def test_a_runbook_published_again_after_the_ticks_were_drafted_fires_its_new_version(api, key, rt, clock, monkeypatch):
    create_schedule(api, key, cron="0 13 * * *")
    runner = _runner(rt)
    runner.prepare(TICK)
    changed = api.patch(f"/runbooks/{key}", json={"title": "Rotate the TLS certificates, then check them"})
    assert changed.status_code == 200, changed.get_json()
    built = _count_built(monkeypatch)

    [job_uuid] = runner.tick(TICK)

    assert api.get(f"/jobs/{job_uuid}").get_json()["runbook"]["version"] == changed.get_json()["version"]
    assert built == [job_uuid]


def test_a_stored_job_changed_by_another_process_is_read_again(api, key, rt, clock):
    created = create_schedule(api, key, cron="0 13 * * *")
    runner = _runner(rt)
    assert runner.tick(at(2026, 3, 2, 12, 30)) == []
    other = SQLAlchemyJobStore(engine=rt.db.engine, tablename=APSCHEDULER_TABLE)
    other.start(BackgroundScheduler(timezone=UTC), "default")
    stored = other.lookup_job(created["id"])
    stored.next_run_time = at(2026, 3, 2, 12, 40)
    other.update_job(stored)

    fired = runner.tick(at(2026, 3, 2, 12, 40))

    assert len(fired) == 1
    with rt.db.read() as session:
        assert session.get(Schedule, created["id"]).last_fired_at == at(2026, 3, 2, 12, 40)


def _count_due_reads(runner: ScheduleRunner, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The times the runner restores its due stored jobs from the store from now on."""
    reads: list[Any] = []
    get_due_jobs = runner.store.get_due_jobs

    def counting(now: Any) -> list[Any]:
        reads.append(now)
        return get_due_jobs(now)

    monkeypatch.setattr(runner.store, "get_due_jobs", counting)
    return reads


def test_the_due_jobs_read_when_the_ticks_were_prepared_are_used_at_the_tick(api, key, rt, clock, monkeypatch):
    created = [create_schedule(api, key, cron="0 13 * * *") for _ in range(3)]
    runner = _runner(rt)
    runner.prepare(TICK)
    assert runner.tick(at(2026, 3, 2, 12, 59, 58)) == []  # a tick before the prepared one leaves the read alone
    reads = _count_due_reads(runner, monkeypatch)

    fired = runner.tick(TICK)

    assert reads == [] and len(fired) == 3
    assert sorted(j["trigger_ref"] for j in jobs(api, key)) == sorted(s["id"] for s in created)
    assert runner.tick(at(2026, 3, 2, 13, 1)) == []  # moved to their next fire time, as after a read at the tick
    assert len(runner.tick(at(2026, 3, 3, 13, 0))) == 3


def test_due_jobs_changed_by_another_process_after_the_ticks_were_prepared_are_read_again(api, key, rt, clock, monkeypatch):
    created = create_schedule(api, key, cron="0 13 * * *")
    runner = _runner(rt)
    runner.prepare(TICK)
    other = SQLAlchemyJobStore(engine=rt.db.engine, tablename=APSCHEDULER_TABLE)
    other.start(BackgroundScheduler(timezone=UTC), "default")
    stored = other.lookup_job(created["id"])
    stored.next_run_time = at(2026, 3, 2, 14, 0)  # another scheduler fired it meanwhile
    other.update_job(stored)
    reads = _count_due_reads(runner, monkeypatch)

    assert runner.tick(TICK) == []
    assert reads == [TICK]


def test_a_schedule_added_after_the_ticks_were_prepared_is_fired_too(api, key, rt, clock, monkeypatch):
    first = create_schedule(api, key, cron="0 13 * * *")
    runner = _runner(rt)
    runner.prepare(TICK)
    second = create_schedule(api, key, cron="0 13 * * *")
    reads = _count_due_reads(runner, monkeypatch)

    fired = runner.tick(TICK)

    assert reads == [TICK] and len(fired) == 2
    assert sorted(j["trigger_ref"] for j in jobs(api, key)) == sorted([first["id"], second["id"]])


def test_a_job_due_after_the_prepared_ticks_but_before_the_tick_is_read_again(api, key, rt, clock, monkeypatch):
    create_schedule(api, key, cron="0 13 * * *")
    runner = _runner(rt)
    runner.prepare(TICK)
    late = create_schedule(api, key, cron="1 13 * * *")
    ScheduleRunner(rt).sync(TICK)  # another scheduler stores it: this one finds it stored already and writes nothing
    reads = _count_due_reads(runner, monkeypatch)

    fired = runner.tick(at(2026, 3, 2, 13, 1))

    assert reads == [at(2026, 3, 2, 13, 1)] and len(fired) == 2
    assert late["id"] in {j["trigger_ref"] for j in jobs(api, key)}


def test_a_schedule_changed_after_the_ticks_were_prepared_fires_with_its_new_trigger(api, key, rt, clock, monkeypatch):
    created = create_schedule(api, key, cron="0 13 * * *")
    runner = _runner(rt)
    runner.prepare(TICK)
    patch(api, key, created["id"], cron="0 13 * * 1")  # 2026-03-02 is a Monday: the same next tick, then none until the 9th
    reads = _count_due_reads(runner, monkeypatch)

    assert len(runner.tick(TICK)) == 1 and reads == [TICK]
    assert runner.tick(at(2026, 3, 3, 13, 0)) == []
    assert len(runner.tick(at(2026, 3, 9, 13, 0))) == 1


def test_a_schedule_another_scheduler_stored_anew_after_the_ticks_were_prepared_keeps_its_new_trigger(api, key, rt, clock,
                                                                                                      monkeypatch):
    created = create_schedule(api, key, cron="0 13 * * *")
    runner = _runner(rt)
    runner.prepare(TICK)
    patch(api, key, created["id"], cron="0 13 * * 1")
    ScheduleRunner(rt).sync(at(2026, 3, 2, 12, 59, 57))  # stored by the other; this one then finds the store up to date
    reads = _count_due_reads(runner, monkeypatch)

    assert len(runner.tick(TICK)) == 1 and reads == [TICK]
    assert runner.tick(at(2026, 3, 3, 13, 0)) == []  # the new trigger was kept, not the one read when preparing


def test_ticks_whose_firing_failed_are_read_again_and_fired_once(api, key, rt, clock, monkeypatch):
    create_schedule(api, key, cron="0 13 * * *")
    runner = _runner(rt)
    runner.prepare(TICK)
    fire_many = firing.fire_many

    def failing(*args: Any, **kwargs: Any) -> list[str]:
        raise RuntimeError("the store went away")

    monkeypatch.setattr("runner.scheduling.scheduler.fire_many", failing)
    with pytest.raises(RuntimeError):
        runner.tick(TICK)
    monkeypatch.setattr("runner.scheduling.scheduler.fire_many", fire_many)
    reads = _count_due_reads(runner, monkeypatch)

    assert len(runner.tick(at(2026, 3, 2, 13, 0, 1))) == 1 and reads == [at(2026, 3, 2, 13, 0, 1)]
    assert runner.tick(at(2026, 3, 2, 13, 0, 2)) == [] and len(jobs(api, key)) == 1


def test_many_ticks_fire_in_several_batches(api, key, rt, clock, monkeypatch):
    monkeypatch.setattr("runner.scheduling.scheduler.DEFAULT_FIRE_BATCH", 2)
    created = [create_schedule(api, key, cron="0 13 * * *") for _ in range(5)]
    runner = _runner(rt)

    fired = runner.tick(TICK)

    assert sorted(j["trigger_ref"] for j in jobs(api, key)) == sorted(s["id"] for s in created)
    assert len(set(fired)) == 5


@pytest.mark.parametrize(("now", "expected_wait"), [
    pytest.param(at(2026, 3, 2, 12, 0), 0.5, id="far-from-the-tick"),
    pytest.param(at(2026, 3, 2, 12, 59, 59, 800_000), 0.2, id="just-before-the-tick"),
])
def test_the_loop_wakes_when_the_next_tick_falls_due(api, key, rt, clock, now, expected_wait):
    create_schedule(api, key, cron="0 13 * * *")
    runner = _runner(rt)
    clock.set(now)

    assert runner._prepare_and_wait() == pytest.approx(expected_wait)


def _claims_while_firing(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> tuple[JobWorker, list[list[Any]]]:
    """A job worker of the runtime, and what it claims right after each batch of ticks is fired."""
    worker = JobWorker(rt, threads=1)
    claimed: list[list[Any]] = []
    fire_many = firing.fire_many

    def fire_and_claim(runtime: Runtime, ticks: list[firing.Tick], drafts: firing.Drafts | None = None) -> list[str]:
        started = fire_many(runtime, ticks, drafts)
        claimed.append(worker.claim(10))
        return started

    monkeypatch.setattr("runner.scheduling.scheduler.fire_many", fire_and_claim)
    return worker, claimed


def test_the_job_workers_of_the_process_start_a_burst_once_it_is_all_fired(api, key, rt, clock, monkeypatch):
    monkeypatch.setattr("runner.scheduling.scheduler.DEFAULT_FIRE_BATCH", 2)
    for _ in range(5):
        create_schedule(api, key, cron="0 13 * * *")
    runner = _runner(rt)
    worker, claimed = _claims_while_firing(rt, monkeypatch)
    rt.signals[JOBS_DUE].clear()

    assert len(runner.tick(TICK)) == 5

    assert claimed == [[], [], []]
    assert not rt.firing_burst.is_set() and rt.signals[JOBS_DUE].is_set()
    assert worker.run_until_idle() == 5


def test_ticks_that_fit_one_batch_do_not_hold_the_job_workers(api, key, rt, clock, monkeypatch):
    for _ in range(2):
        create_schedule(api, key, cron="0 13 * * *")
    runner = _runner(rt)
    _, claimed = _claims_while_firing(rt, monkeypatch)

    runner.tick(TICK)

    assert [len(batch) for batch in claimed] == [2]


def test_a_burst_is_fired_with_sqlite_checkpoints_deferred_and_the_cycle_collector_paused_and_a_single_batch_is_not(
        api, key, rt, clock, monkeypatch):
    monkeypatch.setattr("runner.scheduling.scheduler.DEFAULT_FIRE_BATCH", 2)
    for _ in range(3):
        create_schedule(api, key, cron="0 13 * * *")
    create_schedule(api, key, cron="0 14 * * *")
    runner = _runner(rt)
    deferred: list[bool] = []
    collecting: list[bool] = []
    fire_many = firing.fire_many

    def noting(runtime: Runtime, ticks: list[firing.Tick], drafts: firing.Drafts | None = None) -> list[str]:
        deferred.append(runtime.db.checkpoints_deferred)
        collecting.append(gc.isenabled())
        return fire_many(runtime, ticks, drafts)

    monkeypatch.setattr("runner.scheduling.scheduler.fire_many", noting)

    assert len(runner.tick(TICK)) == 3
    assert gc.isenabled()
    assert len(runner.tick(at(2026, 3, 2, 14, 0))) == 1

    # PostgreSQL has no write-ahead log of ours to defer.
    assert deferred == ([True, True, False] if rt.db.is_sqlite else [False, False, False])
    assert not rt.db.checkpoints_deferred
    assert collecting == [False, False, True]
    assert gc.isenabled()


def test_the_cycle_collector_runs_again_after_a_burst_that_failed(api, key, rt, clock, monkeypatch):
    monkeypatch.setattr("runner.scheduling.scheduler.DEFAULT_FIRE_BATCH", 2)
    for _ in range(3):
        create_schedule(api, key, cron="0 13 * * *")
    runner = _runner(rt)

    def failing(runtime: Runtime, ticks: list[firing.Tick], drafts: firing.Drafts | None = None) -> list[str]:
        raise RuntimeError("the store went away")

    monkeypatch.setattr("runner.scheduling.scheduler.fire_many", failing)

    with pytest.raises(RuntimeError):
        runner.tick(TICK)
    assert gc.isenabled()
