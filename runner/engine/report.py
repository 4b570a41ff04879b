"""How a job looks to its readers: status, step timeline, timing, ETA and rollback notes."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from ..auth import Actor
from ..errors import NotFound
from ..models import Event, Job, StepEvent
from ..runtime import Runtime
from ..services.params import render
from .machine import needs_approval
from .states import JobStatus, StepStatus
from .versions import load_body

__all__ = ["find_job", "job_to_dict", "event_to_dict"]

_ROLLBACK_STATUSES = {JobStatus.FAILED.value, JobStatus.CANCELLED.value, JobStatus.STOPPED.value}


def find_job(session: Session, actor: Actor, job_uuid: str, *, lock: bool = False, postgres: bool = False) -> Job:
    """Load a job of the actor's workspace; another workspace's job is not found."""
    query = select(Job).where(Job.uuid == job_uuid, Job.workspace_id == actor.workspace_id)
    if lock and postgres:
        query = query.with_for_update()
    job = session.scalar(query)
    if job is None:
        raise NotFound(f"job {job_uuid!r} not found in workspace {actor.workspace_slug!r}")
    return job


def _minutes(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds() / 60, 2)


def _step_entry(rt: Runtime, job: Job, step: dict[str, Any], ev: StepEvent | None, now: datetime) -> dict[str, Any]:
    params = job.parameters
    action = step["action"]
    shown_action: dict[str, Any] = {"type": action["type"]}
    if action["type"] == "http":
        shown_action.update(method=action["method"], url=render(action["url"], params))
    elif action["type"] == "runbook":
        shown_action.update(runbook=action["runbook"], wait=action.get("wait", True))
    elif action["type"] == "wait":
        shown_action.update(seconds=action["seconds"])
    overdue = False
    if ev is not None and step.get("est_minutes") is not None and ev.status in (StepStatus.RUNNING.value, StepStatus.WAITING.value):
        overdue = now >= ev.started_at + timedelta(minutes=step["est_minutes"] * rt.settings.overdue_factor)
    return {
        "order": step["order"],
        "title": render(step["title"], params),
        "description": render(step.get("description") or "", params),
        "verification": render(step.get("verification") or "", params),
        "rollback_note": render(step.get("rollback_note") or "", params),
        "owner_role": step.get("owner_role"),
        "est_minutes": step.get("est_minutes"),
        "requires_approval": needs_approval(step, job.environment, rt.settings.approval_environment_ids),
        "is_destructive": bool(step.get("is_destructive")),
        "action": shown_action,
        "status": ev.status if ev else "pending",
        "started_at": ev.started_at if ev else None,
        "completed_at": ev.completed_at if ev else None,
        "actual_minutes": _minutes(ev.started_at, ev.completed_at or (now if job.ended_at is None else job.ended_at)) if ev else None,
        "note": ev.note if ev else None,
        "actor": ev.actor if ev else None,
        "output": ev.output if ev else {},
        "attempts": ev.attempts if ev else 0,
        "approved_by": ev.approved_by if ev else None,
        "approved_at": ev.approved_at if ev else None,
        "overdue": overdue,
    }


def job_to_dict(rt: Runtime, reader: Session | Connection, job: Job, *, with_steps: bool = True,
                step_events: dict[int, StepEvent] | None = None) -> dict[str, Any]:
    """Shape a job for the API, with its step timeline and summary, read with a session or a connection.

    ``step_events`` are the job's step events by order when the caller already holds them all; else they are read.
    """
    now = rt.clock.now()
    body = load_body(reader, job.version_id)
    result: dict[str, Any] = {
        "uuid": job.uuid,
        "status": job.status,
        "runbook": {"key": job.runbook_key, "name": job.runbook_name, "title": body["title"], "version": job.runbook_version},
        "environment": job.environment,
        "parameters": job.parameters,
        "triggered_by": job.triggered_by,
        "trigger_ref": job.trigger_ref,
        "actor": job.actor,
        "parent_job_uuid": job.parent_job_uuid,
        "root_job_uuid": job.root_job_uuid,
        "depth": job.depth,
        "change_ref": job.change_ref,
        "incident_ref": job.incident_ref,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "ended_at": job.ended_at,
        "deadline_at": job.deadline_at,
        "ended_by": job.ended_by,
        "ended_by_actor": job.ended_by_actor,
        "stop_reason": job.stop_reason,
        "message": job.message,
        "stopped_step": job.stopped_step,
        "current_step": job.cursor if 0 < job.cursor <= len(body["steps"]) and job.ended_at is None else None,
        "waiting_for": job.waiting_for,
        "pause_requested": job.pause_requested,
    }
    if not with_steps:
        return result
    if step_events is None:
        step_events = {ev.order: ev for ev in reader.scalars(select(StepEvent).where(StepEvent.job_id == job.id))}
    steps = [_step_entry(rt, job, step, step_events.get(step["order"]), now) for step in body["steps"]]
    estimates = [s["est_minutes"] for s in body["steps"] if s.get("est_minutes") is not None]
    summary: dict[str, Any] = {
        "est_minutes": sum(estimates) if estimates else None,
        "actual_minutes": _minutes(job.started_at, job.ended_at or now) if job.started_at else None,
        "eta": None,
        "rollback_notes": [],
        # Only a runbook step starts a child: a job whose version has none has none to look up.
        "children": [c for c in reader.scalars(select(Job.uuid).where(Job.workspace_id == job.workspace_id,
                                                                        Job.parent_job_uuid == job.uuid).order_by(Job.id))]
        if any(step["action"]["type"] == "runbook" for step in body["steps"]) else [],
    }
    if job.ended_at is None:
        remaining = 0.0
        for entry in steps:
            est = entry["est_minutes"] or 0.0
            if entry["status"] == "pending":
                remaining += est
            elif entry["status"] in (StepStatus.RUNNING.value, StepStatus.WAITING.value):
                remaining += max(0.0, est - (entry["actual_minutes"] or 0.0))
        summary["eta"] = now + timedelta(minutes=remaining)
    if job.status in _ROLLBACK_STATUSES or any(s["status"] == StepStatus.FAILED.value for s in steps):
        done = [s for s in steps if s["status"] == StepStatus.DONE.value and s["rollback_note"]]
        done.sort(key=lambda s: (s["completed_at"], s["order"]), reverse=True)
        summary["rollback_notes"] = [{"order": s["order"], "title": s["title"], "rollback_note": s["rollback_note"]} for s in done]
    result["steps"] = steps
    result["summary"] = summary
    return result


def event_to_dict(event: Event) -> dict[str, Any]:
    """Shape an event for the API and for subscribers."""
    return {"id": event.id, "seq": event.seq, "type": event.type, "created_at": event.created_at, "data": event.payload}
