"""Writing events: in the caller's transaction, numbered per job, shaped for subscribers."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from webhooks.fanout import PENDING_EVENTS

from ..models import Job

__all__ = ["emit", "record", "record_payload", "emit_workspace", "job_data", "EVENT_TYPES"]

# Every event type the runner writes, with what it means (subscriptions and the feed filter on these).
EVENT_TYPES: dict[str, str] = {
    "job.created": "a job was created (queued)",
    "runbook.invoked": "a runbook was invoked: the Runbook Action trigger's event, with the parameters",
    "job.started": "the job began its first step",
    "job.waiting": "the job waits for an operator, an approval, a child job, a timer or a delivery",
    "job.running": "the job continues after waiting",
    "job.pause_requested": "a person asked the job to pause at the next step boundary",
    "job.pause_withdrawn": "a pause request was withdrawn before it took effect",
    "job.paused": "the job paused at a step boundary",
    "job.resumed": "the job resumed after a pause",
    "job.step_overdue": "a step runs longer than its estimate times the overdue factor",
    "job.succeeded": "the job finished every step",
    "job.failed": "a person marked a step failed",
    "job.cancelled": "a person (or the job's parent) aborted the job",
    "job.stopped_by_system": "the system stopped the job; carries stop_reason and message",
    "step.started": "a step began",
    "step.completed": "a step was done, skipped or failed",
    "step.retrying": "an http step attempt failed and will be retried",
    "step.approved": "a step was approved",
    "subscription.disabled": "a subscription was disabled after repeated failures, or removed after 410 Gone",
}


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


def _queue(session: Session, row: dict[str, Any]) -> None:
    """Hold an event row until commit, when webhooks.fanout inserts the transaction's events (and their deliveries) in one go."""
    session.info.setdefault(PENDING_EVENTS, []).append(row)


def record(session: Session, job: Job, seq: int, type_: str, now: datetime, **extra: Any) -> None:
    """Record event number ``seq`` of ``job``."""
    record_payload(session, job, seq, type_, now, {**job_data(job), **extra})


def record_payload(session: Session, job: Job, seq: int, type_: str, now: datetime, payload: Any) -> None:
    """Record event number ``seq`` of ``job`` with a payload the caller built (``job_data`` and more), or encoded ahead."""
    _queue(session, {
        "workspace_id": job.workspace_id,
        "job_id": job.id,
        "seq": seq,
        "type": type_,
        "runbook_key": job.runbook_key,
        "payload": payload,
        "created_at": now,
    })


def emit(session: Session, job: Job, type_: str, now: datetime, **extra: Any) -> None:
    """Record an event of ``job`` with the next per-job sequence number."""
    job.event_seq += 1
    record(session, job, job.event_seq, type_, now, **extra)


def emit_workspace(session: Session, workspace_id: int, type_: str, now: datetime, payload: dict[str, Any],
                   *, runbook_key: str | None = None) -> None:
    """Record an event that belongs to no job (e.g. a subscription being disabled)."""
    _queue(session, {"workspace_id": workspace_id, "job_id": None, "seq": None, "type": type_, "runbook_key": runbook_key,
                     "payload": payload, "created_at": now})
