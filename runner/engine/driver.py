"""Claiming jobs and driving them: transactions around the machine, HTTP calls between them."""
from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from webhooks.outbound import OutboundPolicy

from ..models import Job
from ..runtime import Runtime
from .http import perform
from .machine import Blocked, Machine, NeedsCall
from .states import JobStatus

__all__ = ["claim", "drive"]

log = logging.getLogger(__name__)


def claim(rt: Runtime, worker_id: str, limit: int) -> list[str]:
    """Lease up to ``limit`` jobs that are due; every due job is leased by one worker at a time."""
    now = rt.clock.now()
    due = (Job.next_run_at <= now, or_(Job.lease_until.is_(None), Job.lease_until < now))
    with rt.db.read() as session:
        # A cheap look first, so idle workers do not queue for the write lock.
        if session.scalar(select(Job.id).where(*due).limit(1)) is None:
            return []
    with rt.db.write() as session:
        query = select(Job.id, Job.uuid).where(*due).order_by(Job.next_run_at).limit(limit)
        if rt.db.is_postgres:
            query = query.with_for_update(skip_locked=True)
        rows = session.execute(query).all()
        if rows:
            session.execute(
                update(Job).where(Job.id.in_([r.id for r in rows]))
                .values(lease_owner=worker_id, lease_until=now + timedelta(seconds=rt.settings.lease_seconds))
            )
    return [r.uuid for r in rows]


def _lock(rt: Runtime, session: Session, job_uuid: str) -> Job | None:
    query = select(Job).where(Job.uuid == job_uuid)
    if rt.db.is_postgres:
        query = query.with_for_update()
    return session.scalar(query)


def _take(rt: Runtime, job: Job, worker_id: str) -> bool:
    """Own the job's lease, taking it if it is free and the job is due."""
    now = rt.clock.now()
    if job.lease_owner == worker_id:
        return True
    free = job.lease_until is None or job.lease_until < now
    due = job.next_run_at is not None and job.next_run_at <= now
    if not (free and due):
        return False
    job.lease_owner = worker_id
    job.lease_until = now + timedelta(seconds=rt.settings.lease_seconds)
    return True


def drive(rt: Runtime, job_uuid: str, worker_id: str, *, policy: OutboundPolicy, follow_children: bool = True,
          _depth: int = 0) -> JobStatus | None:
    """Run a job until it finishes or waits; return its status (None if another worker owns it)."""
    pending: NeedsCall | None = None
    result = None
    while True:
        with rt.db.write() as session:
            job = _lock(rt, session, job_uuid)
            if job is None or not _take(rt, job, worker_id):
                return None
            machine = Machine(rt, session, job)
            if pending is not None:
                machine.apply_result(pending, result)
                pending = None
            outcome = machine.run()
            if isinstance(outcome, NeedsCall):
                machine.begin_attempt(outcome)
                pending = outcome
            else:
                job.lease_owner = None
                job.lease_until = None
            status = JobStatus(job.status)
        if pending is not None:
            result = perform(pending.call, policy)
            continue
        if follow_children and isinstance(outcome, Blocked) and outcome.child_uuid and _depth < rt.settings.max_call_depth:
            child_status = drive(rt, outcome.child_uuid, worker_id, policy=policy, _depth=_depth + 1)
            if child_status is not None and child_status.terminal:
                continue
        return status
