"""The scheduler's job store: jobs restored from memory are the jobs APScheduler restores from the rows."""
from __future__ import annotations

from datetime import timedelta

import pytest
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler

from runner.scheduling.scheduler import APSCHEDULER_TABLE, ScheduleRunner
from tests.runner.test_schedules import create_schedule, key  # noqa: F401 - the key fixture

SLOTS = ("id", "func", "func_ref", "trigger", "executor", "args", "kwargs", "name", "misfire_grace_time", "coalesce", "max_instances",
         "next_run_time")


def _plain_store(rt) -> SQLAlchemyJobStore:
    """APScheduler's own store on the same table: every job unpickled from its row."""
    store = SQLAlchemyJobStore(engine=rt.db.engine, tablename=APSCHEDULER_TABLE)
    store.start(BackgroundScheduler(), "default")
    return store


def _seen(job) -> dict:
    return {name: repr(getattr(job, name)) if name == "trigger" else getattr(job, name) for name in SLOTS}


@pytest.fixture
def runner_with_schedules(api, key, rt) -> ScheduleRunner:  # noqa: F811 - the key fixture
    for hour in (3, 4, 5):
        create_schedule(api, key, cron=f"0 {hour} * * *")
    scheduler = ScheduleRunner(rt)
    scheduler.sync(rt.clock.now())
    return scheduler


def test_jobs_restored_from_memory_equal_those_unpickled_from_the_rows(rt, runner_with_schedules):
    store = runner_with_schedules.store
    first, again = store.get_all_jobs(), store.get_all_jobs()

    expected = sorted((_seen(job) for job in _plain_store(rt).get_all_jobs()), key=lambda seen: seen["id"])
    assert len(expected) == 3
    for jobs in (first, again):
        assert sorted((_seen(job) for job in jobs), key=lambda seen: seen["id"]) == expected
    assert all(job._scheduler is runner_with_schedules._owner for job in again)  # noqa: SLF001


def test_a_job_changed_in_its_row_by_someone_else_is_restored_from_the_row(rt, runner_with_schedules):
    store = runner_with_schedules.store
    store.get_all_jobs()
    plain = _plain_store(rt)
    changed = plain.get_all_jobs()[0]
    changed.next_run_time += timedelta(days=1)
    plain.update_job(changed)

    restored = {job.id: job for job in store.get_all_jobs()}

    assert restored[changed.id].next_run_time == changed.next_run_time


def test_a_restored_job_changed_by_the_scheduler_leaves_the_next_restore_untouched(runner_with_schedules):
    store = runner_with_schedules.store
    job = store.get_all_jobs()[0]
    before = job.next_run_time
    job.next_run_time = before + timedelta(days=7)  # what firing does to the jobs it advances, before storing them

    assert {j.id: j.next_run_time for j in store.get_all_jobs()}[job.id] == before
