"""Firing cron ticks: one alone, or a burst of them with a few statements per batch, made ahead of time.

Each tick's job carries an Idempotency-Key made of the schedule and the
tick, so a tick fired twice (by two schedulers, or again after a crash)
starts one job. A burst of ticks is fired in batches, each one transaction:
the batch's schedules, runbooks and earlier jobs are read with one query
each and its jobs are created by ``runner.engine.bulk.create_many``, which
gives every tick the job, events and audit entry firing it alone would.
Seconds before the ticks fall due, ``prepare_ticks`` makes those jobs'
rows and documents (``runner.engine.bulk.Draft``); at the tick, a draft
whose schedule and runbook are unchanged is only stamped and inserted.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.orm import Session

from ..db import execute_many
from ..engine.bulk import Draft, create_many, earlier_jobs, prepare_many
from ..engine.invoke import JobRequest, Trigger, create_or_stop
from ..models import Job, Runbook, RunbookStatus, Schedule
from ..runtime import Runtime

__all__ = ["Drafts", "fire", "fire_many", "prepare_ticks"]

log = logging.getLogger(__name__)

Tick = tuple[str, datetime]
# Drafts of ticks' jobs, with the revision of the schedule each was made from, by the ticks' Idempotency-Keys.
Drafts = dict[str, tuple[int, Draft]]


def _key(schedule_id: str, run_time: datetime) -> str:
    """The Idempotency-Key of one tick of one schedule."""
    return f"schedule:{schedule_id}:{run_time.astimezone(timezone.utc).isoformat()}"


def _request(schedule: Any, runbook: Any, key: str, parameters: Any) -> JobRequest:
    """What firing a tick of ``schedule`` with its ``parameters`` asks of the engine."""
    return JobRequest(workspace_id=schedule.workspace_id, runbook_ref=runbook.key, parameters=parameters,
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
    job = create_or_stop(rt, session, _request(schedule, runbook, key, schedule.parameters))
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
                          _SCHEDULES.c.revision).where(_SCHEDULES.c.id.in_(bindparam("ids", expanding=True, literal_execute=True)))
_THEIR_PARAMETERS = select(_SCHEDULES.c.id, _SCHEDULES.c.parameters).where(
    _SCHEDULES.c.id.in_(bindparam("ids", expanding=True, literal_execute=True)))
_THEIR_RUNBOOKS = select(_RUNBOOKS.c.id, _RUNBOOKS.c.key, _RUNBOOKS.c.status).where(
    _RUNBOOKS.c.id.in_(bindparam("ids", expanding=True, literal_execute=True)))
_FIRED = update(_SCHEDULES).where(_SCHEDULES.c.id == bindparam("schedule_id")).values(
    last_fired_at=bindparam("fired_at"), last_job_uuid=bindparam("job_uuid"))
_PAUSED = update(_SCHEDULES).where(_SCHEDULES.c.id == bindparam("schedule_id")).values(
    enabled=bindparam("enabled"), paused_reason=bindparam("paused_reason"), revision=bindparam("revision"))


def _load(connection: Connection, ticks: list[Tick]) -> tuple[dict[str, Row[Any]], dict[int, Row[Any]]]:
    """The schedules of ``ticks`` (without their parameters) and their runbooks, by id."""
    schedules = {row.id: row for row in connection.execute(_THEIR_SCHEDULES, {"ids": sorted({s for s, _ in ticks})})}
    runbooks = {row.id: row for row in connection.execute(_THEIR_RUNBOOKS, {"ids": sorted({s.runbook_id for s in schedules.values()})})}
    return schedules, runbooks


def _requests(connection: Connection, ticks: list[Tick],
              drafts: Drafts) -> tuple[dict[int, JobRequest], dict[str, Row[Any]], dict[int, Row[Any]]]:
    """The request of each tick whose schedule is there and enabled, by the tick's index; the schedules and runbooks read.

    A tick drafted from its schedule's current revision asks what its draft
    was made for: only the other schedules' parameters are read.
    """
    schedules, runbooks = _load(connection, ticks)
    # In tick order; the undrafted ticks' requests are filled in once their schedules' parameters are read.
    asked: dict[int, JobRequest | None] = {}
    undrafted: dict[int, tuple[Row[Any], str]] = {}
    for index, (schedule_id, run_time) in enumerate(ticks):
        schedule = schedules.get(schedule_id)
        if schedule is None or not schedule.enabled:
            continue
        key = _key(schedule_id, run_time)
        revision, draft = drafts.get(key, (None, None))
        if draft is not None and revision == schedule.revision and draft.request.runbook_ref == runbooks[schedule.runbook_id].key:
            asked[index] = draft.request
        else:
            asked[index] = None
            undrafted[index] = (schedule, key)
    if undrafted:
        wanted = sorted({schedule.id for schedule, _ in undrafted.values()})
        parameters = dict(connection.execute(_THEIR_PARAMETERS, {"ids": wanted}).all())
        for index, (schedule, key) in undrafted.items():
            asked[index] = _request(schedule, runbooks[schedule.runbook_id], key, parameters[schedule.id])
    return asked, schedules, runbooks


def _fire_batch(rt: Runtime, session: Session, ticks: list[Tick], drafts: Drafts) -> list[str | None]:
    """Do what ``_fire_in`` does for each tick, with a few statements for the whole batch instead of several per tick."""
    connection = session.connection()
    asked, schedules, runbooks = _requests(connection, ticks, drafts)
    earlier = earlier_jobs(session, list(asked.values()))
    started: list[str | None] = [None] * len(ticks)
    paused: dict[str, dict[str, Any]] = {}
    requests: list[JobRequest] = []
    fired: list[tuple[int, str, datetime]] = []
    for index, request in asked.items():
        schedule_id, run_time = ticks[index]
        if schedule_id in paused:
            continue
        if (request.workspace_id, request.idempotency_key) in earlier:
            started[index] = earlier[(request.workspace_id, request.idempotency_key)][0]
            continue
        schedule = schedules[schedule_id]
        runbook = runbooks[schedule.runbook_id]
        if runbook.status == RunbookStatus.ARCHIVED.value:
            paused[schedule_id] = _pause_archived(schedule, runbook)
            continue
        requests.append(request)
        fired.append((index, schedule_id, run_time))
    if paused:
        connection.execute(_PAUSED, [{"schedule_id": schedule_id, **change} for schedule_id, change in paused.items()])
    if requests:
        taken = [drafts.pop(request.idempotency_key, (None, None))[1] for request in requests]
        uuids = create_many(rt, session, requests, drafts=taken, earlier=earlier)
        for (index, _, _), job_uuid in zip(fired, uuids, strict=True):
            started[index] = job_uuid
        execute_many(connection, _FIRED, [{"schedule_id": schedule_id, "fired_at": run_time, "job_uuid": job_uuid}
                                          for (_, schedule_id, run_time), job_uuid in zip(fired, uuids, strict=True)])
    return started


def fire_many(rt: Runtime, ticks: list[Tick], drafts: Drafts | None = None) -> list[str]:
    """Start the jobs of many ticks in one transaction; if that fails, fire them one by one so one bad schedule stops none.

    ``drafts`` are what ``prepare_ticks`` made for them; those taken are removed.
    """
    try:
        with rt.db.write() as session:
            started = _fire_batch(rt, session, ticks, {} if drafts is None else drafts)
    except Exception:  # noqa: BLE001 - find the broken one below, fire the others
        log.exception("firing %d schedules together failed; firing them one by one", len(ticks))
        started = []
        for schedule_id, run_time in ticks:
            try:
                started.append(fire(rt, schedule_id, run_time))
            except Exception:  # noqa: BLE001 - one broken schedule must not stop the others
                log.exception("firing schedule %s at %s failed", schedule_id, run_time)
    return [uuid for uuid in started if uuid]


def prepare_ticks(rt: Runtime, ticks: list[Tick]) -> Drafts:
    """Before ticks fall due, check what firing them will need and make their jobs' drafts, reading only.

    Firing checks everything again, and takes a tick's draft only if its
    schedule's revision and its runbook are still those it was made from.
    """
    with rt.db.read() as session:
        connection = session.connection()
        requests, schedules, _ = _requests(connection, ticks, {})
        drafts = prepare_many(rt, session, list(requests.values()))
    return {request.idempotency_key: (schedules[ticks[index][0]].revision, draft)
            for (index, request), draft in zip(requests.items(), drafts, strict=True) if draft is not None}
