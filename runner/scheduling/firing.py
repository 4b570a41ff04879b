"""Firing cron ticks: one alone, or a burst of them with a few statements per batch, checked ahead of time.

Each tick's job carries an Idempotency-Key made of the schedule and the
tick, so a tick fired twice (by two schedulers, or again after a crash)
starts one job. A burst of ticks is fired in batches, each one transaction:
the batch's schedules, runbooks and earlier jobs are read with one query
each and its jobs are created by ``runner.engine.bulk.create_many``, which
gives every tick the job, events and audit entry firing it alone would.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.orm import Session

from ..db import execute_many
from ..engine.bulk import create_many, prepare_many
from ..engine.invoke import JobRequest, Trigger, create_or_stop
from ..models import Job, Runbook, RunbookStatus, Schedule
from ..runtime import Runtime

__all__ = ["fire", "fire_many", "prepare_ticks"]

log = logging.getLogger(__name__)

Tick = tuple[str, datetime]


def _key(schedule_id: str, run_time: datetime) -> str:
    """The Idempotency-Key of one tick of one schedule."""
    return f"schedule:{schedule_id}:{run_time.astimezone(timezone.utc).isoformat()}"


def _request(schedule: Any, runbook: Any, key: str) -> JobRequest:
    """What firing a tick of ``schedule`` asks of the engine."""
    return JobRequest(workspace_id=schedule.workspace_id, runbook_ref=runbook.key, parameters=schedule.parameters,
                      trigger=Trigger("schedule", f"schedule:{schedule.id}", schedule.id), idempotency_key=key)


def _pause_archived(schedule: Any, runbook: Any) -> dict[str, Any]:
    """What pausing a schedule whose runbook was archived changes."""
    return {"enabled": False, "paused_reason": f"runbook {runbook.key} was archived", "revision": schedule.revision + 1}


def _fire_in(rt: Runtime, session: Session, schedule_id: str, run_time: datetime) -> str | None:
    key = _key(schedule_id, run_time)
    schedule = session.get(Schedule, schedule_id)
    if schedule is None or not schedule.enabled:
        return None
    earlier = session.scalar(select(Job.uuid).where(Job.workspace_id == schedule.workspace_id, Job.idempotency_key == key))
    if earlier is not None:
        return earlier
    runbook = session.get(Runbook, schedule.runbook_id)
    if runbook.status == RunbookStatus.ARCHIVED.value:
        for name, value in _pause_archived(schedule, runbook).items():
            setattr(schedule, name, value)
        return None
    job = create_or_stop(rt, session, _request(schedule, runbook, key))
    schedule.last_fired_at = run_time
    schedule.last_job_uuid = job.uuid
    return job.uuid


def fire(rt: Runtime, schedule_id: str, run_time: datetime) -> str | None:
    """Start the job of one tick of a schedule; return its uuid (None when the schedule is gone or paused)."""
    with rt.db.write() as session:
        return _fire_in(rt, session, schedule_id, run_time)


_SCHEDULES = Schedule.__table__
_RUNBOOKS = Runbook.__table__
_JOBS = Job.__table__
# The lists are rendered inline (``literal_execute``) so PostgreSQL plans each lookup with its values: once psycopg
# has prepared a statement, a long IN list of parameters gets a generic plan that compares every row with every key.
_THEIR_SCHEDULES = select(_SCHEDULES.c.id, _SCHEDULES.c.workspace_id, _SCHEDULES.c.runbook_id, _SCHEDULES.c.enabled,
                          _SCHEDULES.c.parameters, _SCHEDULES.c.revision).where(
    _SCHEDULES.c.id.in_(bindparam("ids", expanding=True, literal_execute=True)))
_THEIR_RUNBOOKS = select(_RUNBOOKS.c.id, _RUNBOOKS.c.key, _RUNBOOKS.c.status).where(
    _RUNBOOKS.c.id.in_(bindparam("ids", expanding=True, literal_execute=True)))
_EARLIER_JOBS = select(_JOBS.c.idempotency_key, _JOBS.c.uuid).where(
    _JOBS.c.workspace_id == bindparam("workspace_id"), _JOBS.c.idempotency_key.in_(bindparam("keys", expanding=True, literal_execute=True)))
_FIRED = update(_SCHEDULES).where(_SCHEDULES.c.id == bindparam("schedule_id")).values(
    last_fired_at=bindparam("fired_at"), last_job_uuid=bindparam("job_uuid"))
_PAUSED = update(_SCHEDULES).where(_SCHEDULES.c.id == bindparam("schedule_id")).values(
    enabled=bindparam("enabled"), paused_reason=bindparam("paused_reason"), revision=bindparam("revision"))


def _load(connection: Connection, ticks: list[Tick]) -> tuple[dict[str, Row[Any]], dict[int, Row[Any]]]:
    """The schedules of ``ticks`` and their runbooks, by id."""
    schedules = {row.id: row for row in connection.execute(_THEIR_SCHEDULES, {"ids": sorted({s for s, _ in ticks})})}
    runbooks = {row.id: row for row in connection.execute(_THEIR_RUNBOOKS, {"ids": sorted({s.runbook_id for s in schedules.values()})})}
    return schedules, runbooks


def _fire_batch(rt: Runtime, session: Session, ticks: list[Tick]) -> list[str | None]:
    """Do what ``_fire_in`` does for each tick, with a few statements for the whole batch instead of several per tick."""
    connection = session.connection()
    schedules, runbooks = _load(connection, ticks)
    keys = [_key(schedule_id, run_time) for schedule_id, run_time in ticks]
    wanted: dict[int, list[str]] = {}
    for (schedule_id, _), key in zip(ticks, keys, strict=True):
        if schedule_id in schedules:
            wanted.setdefault(schedules[schedule_id].workspace_id, []).append(key)
    earlier = {(workspace_id, key): job_uuid for workspace_id, workspace_keys in wanted.items()
               for key, job_uuid in connection.execute(_EARLIER_JOBS, {"workspace_id": workspace_id, "keys": workspace_keys})}
    started: list[str | None] = [None] * len(ticks)
    paused: dict[str, dict[str, Any]] = {}
    requests: list[JobRequest] = []
    fired: list[tuple[int, str, datetime]] = []
    for index, ((schedule_id, run_time), key) in enumerate(zip(ticks, keys, strict=True)):
        schedule = schedules.get(schedule_id)
        if schedule is None or not schedule.enabled or schedule_id in paused:
            continue
        if (schedule.workspace_id, key) in earlier:
            started[index] = earlier[(schedule.workspace_id, key)]
            continue
        runbook = runbooks[schedule.runbook_id]
        if runbook.status == RunbookStatus.ARCHIVED.value:
            paused[schedule_id] = _pause_archived(schedule, runbook)
            continue
        requests.append(_request(schedule, runbook, key))
        fired.append((index, schedule_id, run_time))
    if paused:
        connection.execute(_PAUSED, [{"schedule_id": schedule_id, **change} for schedule_id, change in paused.items()])
    if requests:
        uuids = create_many(rt, session, requests)
        for (index, _, _), job_uuid in zip(fired, uuids, strict=True):
            started[index] = job_uuid
        execute_many(connection, _FIRED, [{"schedule_id": schedule_id, "fired_at": run_time, "job_uuid": job_uuid}
                                          for (_, schedule_id, run_time), job_uuid in zip(fired, uuids, strict=True)])
    return started


def fire_many(rt: Runtime, ticks: list[Tick]) -> list[str]:
    """Start the jobs of many ticks in one transaction; if that fails, fire them one by one so one bad schedule stops none."""
    try:
        with rt.db.write() as session:
            started = _fire_batch(rt, session, ticks)
    except Exception:  # noqa: BLE001 - find the broken one below, fire the others
        log.exception("firing %d schedules together failed; firing them one by one", len(ticks))
        started = []
        for schedule_id, run_time in ticks:
            try:
                started.append(fire(rt, schedule_id, run_time))
            except Exception:  # noqa: BLE001 - one broken schedule must not stop the others
                log.exception("firing schedule %s at %s failed", schedule_id, run_time)
    return [uuid for uuid in started if uuid]


def prepare_ticks(rt: Runtime, ticks: list[Tick]) -> None:
    """Before ticks fall due, do the checks firing them will need (runbooks, parameters), reading only.

    Firing checks everything again; what it finds done (parameters already
    validated against the same schema) it does not redo.
    """
    with rt.db.read() as session:
        schedules, runbooks = _load(session.connection(), ticks)
        requests = [_request(schedule, runbooks[schedule.runbook_id], _key(schedule_id, run_time))
                    for schedule_id, run_time in ticks
                    if (schedule := schedules.get(schedule_id)) is not None and schedule.enabled]
        prepare_many(rt, session, requests)
