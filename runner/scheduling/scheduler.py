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

import logging
import threading
from datetime import datetime, timezone
from typing import Any

from apscheduler.job import Job as StoredJob
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import func, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from ..config import Settings
from ..engine.invoke import JobRequest, Trigger, create_or_stop
from ..models import Job, Runbook, RunbookStatus, Schedule
from ..runtime import Runtime
from . import cron

__all__ = ["ScheduleRunner", "Leadership", "fire", "fire_now", "APSCHEDULER_TABLE"]

log = logging.getLogger(__name__)

APSCHEDULER_TABLE = "apscheduler_jobs"
# Bump when the meaning of a stored trigger changes, so stored triggers are rebuilt on the next sync.
TRIGGER_FORMAT = 2
# Seconds between two ticks: the worst-case lateness of a fire, plus the time to fire.
DEFAULT_TICK_SECONDS = 0.5


def fire(rt: Runtime, schedule_id: str, run_time: datetime) -> str | None:
    """Start the job of one tick of a schedule; return its uuid (None when the schedule is gone or paused)."""
    key = f"schedule:{schedule_id}:{run_time.astimezone(timezone.utc).isoformat()}"
    with rt.db.write() as session:
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
            return None
        request = JobRequest(workspace_id=schedule.workspace_id, runbook_ref=runbook.key, parameters=schedule.parameters,
                             trigger=Trigger("schedule", f"schedule:{schedule.id}", schedule.id), idempotency_key=key)
        job = create_or_stop(rt, session, request)
        schedule.last_fired_at = run_time
        schedule.last_job_uuid = job.uuid
        return job.uuid


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
            try:
                self._conn.close()
            except DBAPIError:
                pass
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
            desired = {s.id: (s.cron, s.timezone) for s in session.execute(
                select(Schedule.id, Schedule.cron, Schedule.timezone).where(Schedule.enabled.is_(True)))}
        # The enabled schedules themselves are the revision: updated_at cannot tell two edits within one clock reading apart.
        revision = desired
        if revision == self._revision:
            return
        existing = {job.id: job for job in self.store.get_all_jobs()}
        for stale in set(existing) - set(desired):
            self.store.remove_job(stale)
        grace = self.rt.settings.scheduler_misfire_grace_seconds
        for schedule_id, (expression, zone) in desired.items():
            fingerprint = f"{TRIGGER_FORMAT}|{expression}|{zone}"
            current = existing.get(schedule_id)
            if current is not None and current.name == fingerprint:
                continue
            if current is not None:
                self.store.remove_job(schedule_id)
            trigger = cron.parse(expression, zone)
            self.store.add_job(StoredJob(
                self._owner, id=schedule_id, func="runner.scheduling.scheduler:fire_now", args=(schedule_id,), kwargs={},
                trigger=trigger, executor="default", name=fingerprint, misfire_grace_time=grace, coalesce=True,
                max_instances=1, next_run_time=trigger.get_next_fire_time(None, now),
            ))
        self._revision = revision

    def tick(self, now: datetime | None = None) -> list[str]:
        """Fire every schedule due at ``now`` (once per tick, missed ticks coalesced); return the job uuids."""
        now = now or self.rt.clock.now()
        self.sync(now)
        started: list[str] = []
        for job in self.store.get_due_jobs(now):
            run_times: list[datetime] = []
            upcoming = job.next_run_time
            while upcoming is not None and upcoming <= now:
                run_times.append(upcoming)
                upcoming = job.trigger.get_next_fire_time(upcoming, now)
            in_grace = [r for r in run_times if job.misfire_grace_time is None or (now - r).total_seconds() <= job.misfire_grace_time]
            for run_time in in_grace[-1:] if job.coalesce else in_grace:
                try:
                    job_uuid = fire(self.rt, job.id, run_time)
                except Exception:  # noqa: BLE001 - one broken schedule must not stop the others
                    log.exception("firing schedule %s at %s failed", job.id, run_time)
                    continue
                if job_uuid:
                    started.append(job_uuid)
            if len(run_times) > len(in_grace):
                log.warning("schedule %s missed %d tick(s) beyond the misfire grace time", job.id, len(run_times) - len(in_grace))
            job.next_run_time = upcoming
            if upcoming is None:
                self.store.remove_job(job.id)
            else:
                self.store.update_job(job)
        return started

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
