"""Writing events: in the caller's transaction, numbered per job, shaped for subscribers."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from ..models import Event, Job

__all__ = ["emit", "emit_workspace", "job_data"]


def job_data(job: Job) -> dict[str, Any]:
    """The part of every job event that says which job, runbook and environment it is about."""
    return {
        "job": {
            "uuid": job.uuid,
            "status": job.status,
            "parent_job_uuid": job.parent_job_uuid,
            "root_job_uuid": job.root_job_uuid,
            "depth": job.depth,
            "triggered_by": job.triggered_by,
            "trigger_ref": job.trigger_ref,
        },
        "runbook": {"key": job.runbook_key, "name": job.runbook_name, "version": job.runbook_version},
        "environment": job.environment,
    }


def emit(session: Session, job: Job, type_: str, now: datetime, **extra: Any) -> Event:
    """Record an event of ``job`` with the next per-job sequence number."""
    job.event_seq += 1
    event = Event(
        workspace_id=job.workspace_id,
        job_id=job.id,
        seq=job.event_seq,
        type=type_,
        runbook_key=job.runbook_key,
        payload={**job_data(job), **extra},
        created_at=now,
    )
    session.add(event)
    return event


def emit_workspace(session: Session, workspace_id: int, type_: str, now: datetime, payload: dict[str, Any],
                   *, runbook_key: str | None = None) -> Event:
    """Record an event that belongs to no job (e.g. a subscription being disabled)."""
    event = Event(workspace_id=workspace_id, job_id=None, seq=None, type=type_, runbook_key=runbook_key,
                  payload=payload, created_at=now)
    session.add(event)
    return event
