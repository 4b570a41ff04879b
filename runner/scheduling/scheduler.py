"""The scheduler: fires each due cron tick once, from APScheduler's job store in the runner's database.

Schedules live in our ``schedules`` table (the API writes them); the
scheduler mirrors the enabled ones into APScheduler's SQLAlchemy job store,
which keeps each one's next fire time across restarts. ``tick(now)`` fires
what is due at ``now``, so tests drive it with a controlled clock; in
production a thread ticks at least twice a second, and exactly when the next
stored job falls due. A few seconds before that, it ``prepare``s the ticks
(runbook and parameter checks, and drafts of their jobs' rows), so that at
the tick it mostly writes: 10,000
schedules due on the same minute are fired in batches of a few hundred, each
one transaction with a handful of statements (see ``firing``). Misfires: a
tick missed by up to ``RUNBOOK_MANAGER_SCHEDULER_MISFIRE_GRACE_SECONDS``
still fires, and all the ticks a stopped runner missed are coalesced into one.

Only one scheduler fires: on PostgreSQL the one holding an advisory lock
(``RUNBOOK_MANAGER_SCHEDULER_LEADER_LOCK``); on SQLite the embedded runner
starts exactly one. Each fire also carries an Idempotency-Key made of the
schedule and the tick, so a tick can never start two jobs.
"""
from __future__ import annotations

import contextlib
import gc
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from apscheduler.job import Job as StoredJob
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.util import datetime_to_utc_timestamp
from sqlalchemy import bindparam, delete, func, insert, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from ..config import Settings
from ..models import Schedule
from ..runtime import JOBS_DUE, Runtime
from . import cron
from .firing import Drafts, Tick, fire, fire_many, prepare_ticks
from .store import RememberingJobStore

__all__ = ["ScheduleRunner", "Leadership", "fire", "fire_many", "fire_now", "APSCHEDULER_TABLE"]

log = logging.getLogger(__name__)

APSCHEDULER_TABLE = "apscheduler_jobs"
# Bump when the meaning of a stored trigger changes, so stored triggers are rebuilt on the next sync.
TRIGGER_FORMAT = 2
# Ticks fired per transaction when many schedules are due at once: bounds how long one firing holds SQLite's single writer.
DEFAULT_FIRE_BATCH = 500
# Longest wait between two ticks (the loop wakes earlier when a stored job falls due sooner).
DEFAULT_TICK_SECONDS = 0.5
# How long before ticks fall due the loop checks what firing them needs, so that at the tick it mostly writes.
DEFAULT_PREPARE_SECONDS = 5.0
# Closer to the ticks than this, preparing them (about 0.1 ms each) could make them late: they are fired unprepared.
DEFAULT_PREPARE_LEAST_SECONDS = 1.0


def fire_now(schedule_id: str) -> str | None:
    """Fire a schedule once, now, with the runner configured by the environment (the stored jobs' callable)."""
    rt = Runtime.from_settings(Settings.from_env())
    return fire(rt, schedule_id, rt.clock.now())


def _plan(job: StoredJob, now: datetime) -> tuple[list[datetime], int, datetime | None]:
    """The ticks of a due stored job to fire at ``now``, how many were missed beyond the grace time, and its next fire time."""
    run_times: list[datetime] = []
    upcoming = job.next_run_time
    while upcoming is not None and upcoming <= now:
        run_times.append(upcoming)
        upcoming = job.trigger.get_next_fire_time(upcoming, now)
    in_grace = [r for r in run_times if job.misfire_grace_time is None or (now - r).total_seconds() <= job.misfire_grace_time]
    return (in_grace[-1:] if job.coalesce else in_grace), len(run_times) - len(in_grace), upcoming


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


@dataclass(frozen=True)
class _DueRead:
    """The stored jobs found due when ticks were prepared: at the tick they are used again if their rows are unchanged."""

    when: datetime
    # Each one's row as it was read: next fire time and a hash of its pickled state, by id.
    rows: dict[str, tuple[float, int]]
    jobs: list[StoredJob]


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Keep Python's cycle collector from running for the length of a burst.

    A burst allocates a few hundred thousand objects. Counting them, the
    collector ends up walking the whole heap (the scheduler's stored jobs
    included: about 0.1 s with 10,000 schedules), in the middle of the burst
    and so delaying every tick after it. The pause holds for the whole
    process, its other threads included, for the second or so a burst takes:
    reference counting still frees what is let go meanwhile, and reference
    cycles wait for the collector, which runs as usual once the burst is over.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class ScheduleRunner:
    """Mirror enabled schedules into APScheduler's job store and fire due ticks."""

    def __init__(self, rt: Runtime, *, tick_seconds: float = DEFAULT_TICK_SECONDS,
                 prepare_seconds: float = DEFAULT_PREPARE_SECONDS) -> None:
        self.rt = rt
        self.tick_seconds = tick_seconds
        self.prepare_seconds = prepare_seconds
        self._prepared: datetime | None = None
        # Drafts of the jobs of prepared ticks, by the time they fall due.
        self._drafts: dict[datetime, Drafts] = {}
        self.leadership = Leadership(rt)
        self._owner = BackgroundScheduler(timezone=timezone.utc)
        self.store = RememberingJobStore(engine=rt.db.engine, tablename=APSCHEDULER_TABLE)
        self.store.start(self._owner, "default")
        self._revision: Any = None
        # The due stored jobs read when the next ticks were prepared.
        self._due_read: _DueRead | None = None
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
        # Schedules with the same expression and zone share a trigger and its next fire time: parse and compute them once.
        triggers: dict[str, tuple[cron.WallClockCronTrigger, datetime | None]] = {}
        for schedule_id, (expression, zone) in desired.items():
            fingerprint = f"{TRIGGER_FORMAT}|{expression}|{zone}"
            current = existing.get(schedule_id)
            if current is not None and current.name == fingerprint:
                continue
            if current is not None:
                stale.add(schedule_id)
            if fingerprint not in triggers:
                trigger = cron.parse(expression, zone)
                triggers[fingerprint] = (trigger, trigger.get_next_fire_time(None, now))
            trigger, next_run_time = triggers[fingerprint]
            added.append(StoredJob(
                self._owner, id=schedule_id, func="runner.scheduling.scheduler:fire_now", args=(schedule_id,), kwargs={},
                trigger=trigger, executor="default", name=fingerprint, misfire_grace_time=grace, coalesce=True,
                max_instances=1, next_run_time=next_run_time,
            ))
        self._replace_stored(stale, added)
        self._revision = revision

    def tick(self, now: datetime | None = None) -> list[str]:
        """Fire every schedule due at ``now`` (once per tick, missed ticks coalesced); return the job uuids."""
        now = now or self.rt.clock.now()
        self.sync(now)
        ticks, advanced, finished = self._due(now, self._due_jobs(now), warn=True)
        drafts: Drafts = {}
        for when in [when for when in self._drafts if when <= now]:
            drafts.update(self._drafts.pop(when))
        started: list[str] = []
        with self._burst() if len(ticks) > DEFAULT_FIRE_BATCH else contextlib.nullcontext():
            for first in range(0, len(ticks), DEFAULT_FIRE_BATCH):
                started += fire_many(self.rt, ticks[first:first + DEFAULT_FIRE_BATCH], drafts)
            self._store_next_run_times(advanced)
        for job in finished:
            self.store.remove_job(job.id)
        self.store.forget({job.id for job in finished})
        return started

    @contextlib.contextmanager
    def _burst(self) -> Iterator[None]:
        """Fire more than one batch of ticks with SQLite checkpoints deferred and this process's job workers held back.

        Starting the burst's first jobs meanwhile would only make its last ones
        later (one interpreter, one SQLite writer); the workers are woken when it is done.
        """
        with self.rt.db.deferring_checkpoints(), _collector_paused():
            self.rt.firing_burst.set()
            try:
                yield
            finally:
                self.rt.firing_burst.clear()
                self.rt.signals[JOBS_DUE].set()

    def prepare(self, when: datetime) -> int:
        """Check now what firing the ticks due at ``when`` will need, so that firing them is mostly writing; return how many."""
        self.sync(self.rt.clock.now())
        # The rows first: if one changes before its job is restored, the two differ and the tick reads them again.
        rows = self._due_rows(when)
        jobs = self.store.get_due_jobs(when)
        self._due_read = _DueRead(when, rows, jobs) if {job.id for job in jobs} == rows.keys() else None
        ticks, _, _ = self._due(when, jobs, warn=False, advance=False)
        drafts: Drafts = {}
        for first in range(0, len(ticks), DEFAULT_FIRE_BATCH):
            drafts.update(prepare_ticks(self.rt, ticks[first:first + DEFAULT_FIRE_BATCH]))
        self._drafts[when] = drafts
        return len(ticks)

    def _due_rows(self, now: datetime) -> dict[str, tuple[float, int]]:
        """The job store's rows due at ``now``: next fire time and a hash of the pickled state, by id.

        Python's own 64-bit hash of the bytes: about 3 ms for 10,000 due rows
        at the tick, where a cryptographic digest took 18 ms.
        """
        table = self.store.jobs_t
        with self.rt.db.connect() as connection:
            rows = connection.execute(select(table.c.id, table.c.next_run_time, table.c.job_state)
                                      .where(table.c.next_run_time <= datetime_to_utc_timestamp(now)))
            return {job_id: (next_run_time, hash(state)) for job_id, next_run_time, state in rows}

    def _due_jobs(self, now: datetime) -> list[StoredJob]:
        """The stored jobs due at ``now``: those read when the ticks were prepared, if their rows are still exactly the due ones.

        Restoring 10,000 stored jobs takes about 0.1 to 0.2 s, which at the tick
        would delay every job of a burst. Reading their rows and comparing each
        one's next fire time and a hash of its pickled state costs a fraction
        of that, and sees whatever changed them since: this scheduler's own
        writes (``sync`` of a changed schedule just before), another
        scheduler's while it led, and jobs that fell due in between.
        """
        read = self._due_read
        if read is None or read.when > now:
            return self.store.get_due_jobs(now)
        self._due_read = None
        if self._due_rows(now) == read.rows:
            return read.jobs
        return self.store.get_due_jobs(now)

    def _due(self, now: datetime, jobs: list[StoredJob], *, warn: bool,
             advance: bool = True) -> tuple[list[Tick], list[StoredJob], list[StoredJob]]:
        """The ticks of the due ``jobs`` at ``now``, and the jobs moved to their next fire time (or finished, having none).

        Without ``advance`` the jobs are left as they are (their next fire time is not set).
        """
        ticks: list[Tick] = []
        advanced, finished = [], []
        # Stored jobs with the same trigger (its fingerprint is the job's name) that were due at the same time
        # have the same ticks to fire and the same next fire time: thousands of them cost one computation.
        plans: dict[tuple[Any, ...], tuple[list[datetime], int, datetime | None]] = {}
        for job in jobs:
            plan_key = (job.name, job.next_run_time, job.misfire_grace_time, job.coalesce)
            if plan_key not in plans:
                plans[plan_key] = _plan(job, now)
            run_times, missed, upcoming = plans[plan_key]
            ticks += [(job.id, run_time) for run_time in run_times]
            if missed and warn:
                log.warning("schedule %s missed %d tick(s) beyond the misfire grace time", job.id, missed)
            if advance:
                job.next_run_time = upcoming
            (advanced if upcoming is not None else finished).append(job)
        return ticks, advanced, finished

    def _state(self, job: StoredJob) -> dict[str, Any]:
        """A stored job as a row of APScheduler's table, pickled the way its job store does."""
        return {"job_id": job.id, "next_run_time": datetime_to_utc_timestamp(job.next_run_time), "job_state": self.store.pickled(job)}

    def _replace_stored(self, removed: set[str], added: list[StoredJob]) -> None:
        """Remove and add stored jobs in one transaction (the job store writes one per transaction)."""
        if not removed and not added:
            return
        table = self.store.jobs_t
        self.store.forget(removed)
        with self.rt.db.engine.begin() as connection:
            ordered = sorted(removed)
            for first in range(0, len(ordered), DEFAULT_FIRE_BATCH):
                connection.execute(delete(table).where(table.c.id.in_(ordered[first:first + DEFAULT_FIRE_BATCH])))
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

    def _prepare_and_wait(self) -> float:
        """Prepare the next ticks when they are close; return how long to wait (less than ``tick_seconds`` when they fall due sooner)."""
        upcoming = self.store.get_next_run_time()
        if upcoming is None:
            return self.tick_seconds
        ahead = (upcoming - self.rt.clock.now()).total_seconds()
        if DEFAULT_PREPARE_LEAST_SECONDS <= ahead <= self.prepare_seconds and upcoming != self._prepared:
            self._prepared = upcoming
            self.prepare(upcoming)
            ahead = (upcoming - self.rt.clock.now()).total_seconds()
        return min(self.tick_seconds, max(0.0, ahead))

    def _loop(self) -> None:
        while not self._stop.is_set():
            wait = self.tick_seconds
            try:
                if self.leadership.held():
                    self.tick()
                    # Waking when the next tick falls due, not up to ``tick_seconds`` later, takes the polling out of the drift.
                    wait = self._prepare_and_wait()
            except Exception:  # noqa: BLE001 - the store may be briefly unavailable; tick again
                log.exception("scheduler tick failed")
            self._stop.wait(wait)
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
