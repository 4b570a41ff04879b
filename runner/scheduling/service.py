"""Schedule use cases for the API: create, list with next fire times, enable/disable, delete."""
from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..auth import Action, Actor, require
from ..errors import Conflict, InvalidInput, NotFound
from ..models import Runbook, RunbookStatus, Schedule
from ..runtime import Runtime
from ..services import audit
from ..services.params import validate_values
from ..services.runbooks import find
from . import cron

__all__ = ["create", "list_for_runbook", "update_schedule", "delete", "to_dict"]

# How many upcoming fire times a schedule shows.
NEXT_FIRE_TIMES = 5


def to_dict(schedule: Schedule, runbook: Runbook, now: datetime) -> dict[str, Any]:
    """Shape a schedule for the API, with its next fire times and a description of its expression."""
    upcoming = cron.next_fire_times(cron.parse(schedule.cron, schedule.timezone), now, NEXT_FIRE_TIMES) if schedule.enabled else []
    return {
        "id": schedule.id,
        "runbook": runbook.key,
        "cron": schedule.cron,
        "timezone": schedule.timezone,
        "description": schedule.description,
        "cron_description": cron.describe(schedule.cron),
        "parameters": schedule.parameters,
        "enabled": schedule.enabled,
        "paused_reason": schedule.paused_reason,
        "next_fire_times": upcoming,
        "created_at": schedule.created_at,
        "created_by": schedule.created_by,
        "last_fired_at": schedule.last_fired_at,
        "last_job_uuid": schedule.last_job_uuid,
    }


def _schedulable(runbook: Runbook) -> None:
    if runbook.status == RunbookStatus.ARCHIVED.value:
        raise Conflict(f"runbook {runbook.key} ({runbook.name}) is archived; it cannot be scheduled", current_status=runbook.status)
    if not runbook.callable:
        raise Conflict(f"runbook {runbook.key} ({runbook.name}) is not callable; set callable to true before scheduling it",
                       current_status=runbook.status)


def create(rt: Runtime, actor: Actor, ref: str, data: dict[str, Any]) -> dict[str, Any]:
    """Schedule a callable runbook; parameters are checked now and again at every fire."""
    require(actor, Action.AUTOMATE)
    errors = cron.check(data["cron"], data["timezone"])
    now = rt.clock.now()
    with rt.db.write() as session:
        runbook = find(session, actor, ref)
        _schedulable(runbook)
        try:
            parameters = validate_values(runbook.body["parameters"], data.get("parameters", {}))
        except InvalidInput as exc:
            errors += exc.errors
            parameters = {}
        if errors:
            raise InvalidInput("the schedule cannot be created: " + "; ".join(f"{e['field']}: {e['message']}" for e in errors), errors=errors)
        schedule = Schedule(id="sch_" + secrets.token_hex(8), workspace_id=actor.workspace_id, runbook_id=runbook.id, cron=data["cron"],
                            timezone=data["timezone"], parameters=parameters, enabled=data.get("enabled", True),
                            description=data.get("description", ""), created_at=now, created_by=actor.subject, updated_at=now,
                            revision=secrets.randbelow(2**31))
        session.add(schedule)
        audit.record(session, rt.clock, workspace_id=actor.workspace_id, actor=actor, action="schedule.create", target=runbook.key,
                     detail={"id": schedule.id, "cron": schedule.cron, "timezone": schedule.timezone})
        return to_dict(schedule, runbook, now)


def list_for_runbook(rt: Runtime, actor: Actor, ref: str) -> dict[str, Any]:
    """List a runbook's schedules with their next fire times."""
    require(actor, Action.VIEW_PUBLISHED)
    now = rt.clock.now()
    with rt.db.read() as session:
        runbook = find(session, actor, ref)
        rows = session.scalars(select(Schedule).where(Schedule.runbook_id == runbook.id).order_by(Schedule.created_at))
        return {"items": [to_dict(s, runbook, now) for s in rows]}


def _find(session: Session, actor: Actor, ref: str, schedule_id: str) -> tuple[Schedule, Runbook]:
    runbook = find(session, actor, ref)
    schedule = session.get(Schedule, schedule_id)
    if schedule is None or schedule.runbook_id != runbook.id:
        raise NotFound(f"schedule {schedule_id!r} not found for runbook {runbook.key}")
    return schedule, runbook


def update_schedule(rt: Runtime, actor: Actor, ref: str, schedule_id: str, data: dict[str, Any]) -> dict[str, Any]:
    """Enable or disable a schedule, or change its expression, zone or parameters."""
    require(actor, Action.AUTOMATE)
    now = rt.clock.now()
    with rt.db.write() as session:
        schedule, runbook = _find(session, actor, ref, schedule_id)
        expression, zone = data.get("cron", schedule.cron), data.get("timezone", schedule.timezone)
        errors = cron.check(expression, zone)
        parameters = schedule.parameters
        if "parameters" in data:
            try:
                parameters = validate_values(runbook.body["parameters"], data["parameters"])
            except InvalidInput as exc:
                errors += exc.errors
        if errors:
            raise InvalidInput("the schedule cannot be changed: " + "; ".join(f"{e['field']}: {e['message']}" for e in errors), errors=errors)
        if data.get("enabled") and not schedule.enabled:
            _schedulable(runbook)
            schedule.paused_reason = None
        schedule.cron, schedule.timezone, schedule.parameters = expression, zone, parameters
        schedule.enabled = data.get("enabled", schedule.enabled)
        schedule.description = data.get("description", schedule.description)
        schedule.updated_at = now
        schedule.revision += 1
        audit.record(session, rt.clock, workspace_id=actor.workspace_id, actor=actor, action="schedule.update", target=runbook.key,
                     detail={"id": schedule.id, "fields": sorted(data)})
        return to_dict(schedule, runbook, now)


def delete(rt: Runtime, actor: Actor, ref: str, schedule_id: str) -> None:
    """Remove a schedule."""
    require(actor, Action.AUTOMATE)
    with rt.db.write() as session:
        schedule, runbook = _find(session, actor, ref, schedule_id)
        session.delete(schedule)
        audit.record(session, rt.clock, workspace_id=actor.workspace_id, actor=actor, action="schedule.delete", target=runbook.key,
                     detail={"id": schedule_id})

