"""The scheduler: fires each due cron tick once, from APScheduler's job store in the runner's database.

Schedules live in our ``schedules`` table (the API writes them); the
scheduler mirrors the enabled ones into APScheduler's SQLAlchemy job store,
which keeps each one's next fire time across restarts. ``tick(now)`` fires
what is due at ``now``, so tests drive it with a controlled clock; in
production a thread ticks twice a second. Misfires: a tick missed by up to
``RUNBOOK_MANAGER_SCHEDULER_MISFIRE_GRACE_SECONDS`` still fires, and all the
ticks a stopped runner missed are coalesced into one.

Only one scheduler fires: on PostgreSQL the one holding an advisory lock
(``RUNBOOK_MANAGER_SCHEDULER_LEADER_LOCK``); on SQLite the embedded runner
starts exactly one. Each fire also carries an Idempotency-Key made of the
schedule and the tick, so a tick can never start two jobs.
"""
from __future__ import annotations

import contextlib
import logging
import pickle
import threading
from datetime import datetime, timezone
from typing import Any

from apscheduler.job import Job as StoredJob
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.util import datetime_to_utc_timestamp
from sqlalchemy import bindparam, delete, func, insert, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from ..config import Settings
from ..engine.invoke import JobRequest, Trigger, create_or_stop
from ..models import Job, Runbook, RunbookStatus, Schedule
from ..runtime import Runtime
from . import cron

__all__ = ["ScheduleRunner", "Leadership", "fire", "fire_many", "fire_now", "APSCHEDULER_TABLE"]

log = logging.getLogger(__name__)

APSCHEDULER_TABLE = "apscheduler_jobs"
# Bump when the meaning of a stored trigger changes, so stored triggers are rebuilt on the next sync.
TRIGGER_FORMAT = 2
# Ticks fired per transaction when many schedules are due at once.
DEFAULT_FIRE_BATCH = 200
# Seconds between two ticks: the worst-case lateness of a fire, plus the time to fire.
DEFAULT_TICK_SECONDS = 0.5


def _fire_in(rt: Runtime, session: Session, schedule_id: str, run_time: datetime) -> str | None:
    key = f"schedule:{schedule_id}:{run_time.astimezone(timezone.utc).isoformat()}"
    schedule = session.get(Schedule, schedule_id)
    if schedule is None or not schedule.enabled:
        return None
    earlier = session.scalar(select(Job.uuid).where(Job.workspace_id == schedule.workspace_id, Job.idempotency_key == key))
    if earlier is not None:
        return earlier
    runbook = session.get(Runbook, schedule.runbook_id)
    if runbook.status == RunbookStatus.ARCHIVED.value:
        schedule.enabled = False
        schedule.paused_reason = f"runbook {runbook.key} was archived"
        schedule.revision += 1
        return None
    request = JobRequest(workspace_id=schedule.workspace_id, runbook_ref=runbook.key, parameters=schedule.parameters,
                         trigger=Trigger("schedule", f"schedule:{schedule.id}", schedule.id), idempotency_key=key)
    job = create_or_stop(rt, session, request)
    schedule.last_fired_at = run_time
    schedule.last_job_uuid = job.uuid
    return job.uuid


def fire(rt: Runtime, schedule_id: str, run_time: datetime) -> str | None:
    """Start the job of one tick of a schedule; return its uuid (None when the schedule is gone or paused)."""
    with rt.db.write() as session:
        return _fire_in(rt, session, schedule_id, run_time)


def fire_many(rt: Runtime, ticks: list[tuple[str, datetime]]) -> list[str]:
    """Start the jobs of many ticks in one transaction; if that fails, fire them one by one so one bad schedule stops none."""
    try:
        with rt.db.write() as session:
            started = [_fire_in(rt, session, schedule_id, run_time) for schedule_id, run_time in ticks]
    except Exception:  # noqa: BLE001 - find the broken one below, fire the others
        log.exception("firing %d schedules together failed; firing them one by one", len(ticks))
        started = []
        for schedule_id, run_time in ticks:
            try:
                started.append(fire(rt, schedule_id, run_time))
            except Exception:  # noqa: BLE001 - one broken schedule must not stop the others
                log.exception("firing schedule %s at %s failed", schedule_id, run_time)
    return [uuid for uuid in started if uuid]


def fire_now(schedule_id: str) -> str | None:
    """Fire a schedule once, now, with the runner configured by the environment (the stored jobs' callable)."""
    rt = Runtime.from_settings(Settings.from_env())
    return fire(rt, schedule_id, rt.clock.now())


class Leadership:
    """Decide whether this process is the one scheduler: a PostgreSQL advisory lock held on a dedicated connection."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._conn: Connection | None = None
        self._held = False

    def held(self) -> bool:
        """Return True while this process leads, trying to take the lead when nobody holds it."""
        if not self.rt.db.is_postgres:
            return True
        try:
            if self._conn is None:
                self._conn = self.rt.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            if self._held:
                self._conn.execute(text("SELECT 1"))
                return True
            self._held = bool(self._conn.execute(select(func.pg_try_advisory_lock(self.rt.settings.scheduler_leader_lock))).scalar())
            if self._held:
                log.info("this process is now the scheduler (advisory lock %s)", self.rt.settings.scheduler_leader_lock)
            return self._held
        except DBAPIError:
            log.warning("lost the database connection that held the scheduler lock", exc_info=True)
            self.release()
            return False

    def release(self) -> None:
        """Give up the lead (closing the connection releases the lock)."""
        if self._conn is not None:
            with contextlib.suppress(DBAPIError):  # a connection already lost has released the lock with it
                self._conn.close()
        self._conn = None
        self._held = False


class ScheduleRunner:
    """Mirror enabled schedules into APScheduler's job store and fire due ticks."""

    def __init__(self, rt: Runtime, *, tick_seconds: float = DEFAULT_TICK_SECONDS) -> None:
        self.rt = rt
        self.tick_seconds = tick_seconds
        self.leadership = Leadership(rt)
        self._owner = BackgroundScheduler(timezone=timezone.utc)
        self.store = SQLAlchemyJobStore(engine=rt.db.engine, tablename=APSCHEDULER_TABLE)
        self.store.start(self._owner, "default")
        self._revision: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sync(self, now: datetime) -> None:
        """Bring the job store in line with the enabled schedules (only when schedules changed)."""
        with self.rt.db.read() as session:
            # Every change bumps a schedule's revision (and enabling or disabling changes the count), so this
            # aggregate changes whenever the set of enabled schedules does, without reading them all each tick.
            revision = tuple(session.execute(
                select(func.count(Schedule.id), func.coalesce(func.sum(Schedule.revision), 0)).where(Schedule.enabled.is_(True))
            ).one())
            if revision == self._revision:
                return
            desired = {s.id: (s.cron, s.timezone) for s in session.execute(
                select(Schedule.id, Schedule.cron, Schedule.timezone).where(Schedule.enabled.is_(True)))}
        existing = {job.id: job for job in self.store.get_all_jobs()}
        grace = self.rt.settings.scheduler_misfire_grace_seconds
        stale = set(existing) - set(desired)
        added: list[StoredJob] = []
        for schedule_id, (expression, zone) in desired.items():
            fingerprint = f"{TRIGGER_FORMAT}|{expression}|{zone}"
            current = existing.get(schedule_id)
            if current is not None and current.name == fingerprint:
                continue
            if current is not None:
                stale.add(schedule_id)
            trigger = cron.parse(expression, zone)
            added.append(StoredJob(
                self._owner, id=schedule_id, func="runner.scheduling.scheduler:fire_now", args=(schedule_id,), kwargs={},
                trigger=trigger, executor="default", name=fingerprint, misfire_grace_time=grace, coalesce=True,
                max_instances=1, next_run_time=trigger.get_next_fire_time(None, now),
            ))
        self._replace_stored(stale, added)
        self._revision = revision

    def tick(self, now: datetime | None = None) -> list[str]:
        """Fire every schedule due at ``now`` (once per tick, missed ticks coalesced); return the job uuids."""
        now = now or self.rt.clock.now()
        self.sync(now)
        ticks: list[tuple[str, datetime]] = []
        advanced, finished = [], []
        for job in self.store.get_due_jobs(now):
            run_times: list[datetime] = []
            upcoming = job.next_run_time
            while upcoming is not None and upcoming <= now:
                run_times.append(upcoming)
                upcoming = job.trigger.get_next_fire_time(upcoming, now)
            in_grace = [r for r in run_times if job.misfire_grace_time is None or (now - r).total_seconds() <= job.misfire_grace_time]
            ticks += [(job.id, run_time) for run_time in (in_grace[-1:] if job.coalesce else in_grace)]
            if len(run_times) > len(in_grace):
                log.warning("schedule %s missed %d tick(s) beyond the misfire grace time", job.id, len(run_times) - len(in_grace))
            job.next_run_time = upcoming
            (advanced if upcoming is not None else finished).append(job)
        started: list[str] = []
        for first in range(0, len(ticks), DEFAULT_FIRE_BATCH):
            started += fire_many(self.rt, ticks[first:first + DEFAULT_FIRE_BATCH])
        self._store_next_run_times(advanced)
        for job in finished:
            self.store.remove_job(job.id)
        return started

    def _state(self, job: StoredJob) -> dict[str, Any]:
        """A stored job as a row of APScheduler's table, pickled the way its job store does."""
        return {"job_id": job.id, "next_run_time": datetime_to_utc_timestamp(job.next_run_time),
                "job_state": pickle.dumps(job.__getstate__(), self.store.pickle_protocol)}

    def _replace_stored(self, removed: set[str], added: list[StoredJob]) -> None:
        """Remove and add stored jobs in one transaction (the job store writes one per transaction)."""
        if not removed and not added:
            return
        table = self.store.jobs_t
        with self.rt.db.engine.begin() as connection:
            if removed:
                connection.execute(delete(table).where(table.c.id.in_(sorted(removed))))
            if added:
                connection.execute(insert(table).values(id=bindparam("job_id"), next_run_time=bindparam("next_run_time"),
                                                        job_state=bindparam("job_state")), [self._state(job) for job in added])

    def _store_next_run_times(self, jobs: list[StoredJob]) -> None:
        """Write the next fire times of many stored jobs in one statement (the job store writes one per transaction)."""
        if not jobs:
            return
        table = self.store.jobs_t
        rows = [self._state(job) for job in jobs]
        statement = (update(table).where(table.c.id == bindparam("job_id"))
                     .values(next_run_time=bindparam("next_run_time"), job_state=bindparam("job_state")))
        with self.rt.db.engine.begin() as connection:
            connection.execute(statement, rows)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if self.leadership.held():
                    self.tick()
            except Exception:  # noqa: BLE001 - the store may be briefly unavailable; tick again
                log.exception("scheduler tick failed")
            self._stop.wait(self.tick_seconds)
        self.leadership.release()

    def start(self) -> None:
        """Tick in a background thread."""
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop ticking and give up the lead."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
