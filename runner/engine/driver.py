"""Claiming jobs and driving them: transactions around the machine, HTTP calls between them."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.orm import Session

from webhooks.fanout import fan_out, read_flow_deliveries
from webhooks.outbound import OutboundPolicy

from ..models import Job, StepEvent
from ..runtime import Runtime
from .http import perform
from .machine import Blocked, Machine, NeedsCall, read_runbook_statuses
from .states import TERMINAL, JobStatus
from .versions import load_body

__all__ = ["UNMOVED", "Moved", "Outcome", "abandon", "claim", "claim_and_move", "drive", "follow_up", "move_new"]

log = logging.getLogger(__name__)


# Built once: idle workers look for due jobs several times a second.
_DUE = (Job.next_run_at <= bindparam("now"), or_(Job.lease_until.is_(None), Job.lease_until < bindparam("now")))
# In due order, as claiming reads them: PostgreSQL then walks ix_jobs_next_run_at even before it has statistics of a
# grown table, where without an order it guessed that a scan of every job would soon meet a due one.
_ANY_DUE = select(Job.id).where(*_DUE).order_by(Job.next_run_at).limit(1)
_DUE_IDS = select(Job.id, Job.uuid).where(*_DUE).order_by(Job.next_run_at).limit(bindparam("limit"))
_DUE_JOBS = select(Job).where(*_DUE).order_by(Job.next_run_at).limit(bindparam("limit"))


def _any_due(rt: Runtime, now: datetime) -> bool:
    """A cheap look first, so idle workers do not queue for the write lock."""
    with rt.db.connect() as connection:
        return connection.execute(_ANY_DUE, {"now": now}).first() is not None


def _locking(rt: Runtime, query: Any) -> Any:
    return query.with_for_update(skip_locked=True) if rt.db.is_postgres else query


def claim(rt: Runtime, worker_id: str, limit: int) -> list[str]:
    """Lease up to ``limit`` jobs that are due; every due job is leased by one worker at a time."""
    now = rt.clock.now()
    if not _any_due(rt, now):
        return []
    with rt.db.write() as session:
        rows = session.execute(_locking(rt, _DUE_IDS), {"now": now, "limit": limit}).all()
        if rows:
            session.execute(
                update(Job).where(Job.id.in_([r.id for r in rows]))
                .values(lease_owner=worker_id, lease_until=now + timedelta(seconds=rt.settings.lease_seconds))
            )
    return [r.uuid for r in rows]


class Unmoved:
    """The outcome of a job that was leased but could not be moved with its batch: it is driven alone."""

    def __repr__(self) -> str:
        return "UNMOVED"


UNMOVED = Unmoved()
Outcome = NeedsCall | Blocked | Unmoved | None


def claim_and_move(rt: Runtime, worker_id: str, limit: int) -> list[tuple[str, Outcome]]:
    """Lease up to ``limit`` due jobs and move each as far as the database allows, all in one transaction.

    Returns what each job needs next (see ``follow_up``); None when nothing (it ended). Jobs that only
    wait for a person, a timer or a child cost one shared transaction instead
    of a claim and a transaction of their own. The batch ends at the first job
    that needs more (an HTTP call, a child to run): its follow-up takes time,
    and the jobs after it are left for other threads rather than made to wait
    behind it. If moving any job fails, nothing of the batch is kept and the
    jobs are claimed and driven one by one instead, so one broken job cannot
    hold up the others.
    """
    if not _any_due(rt, rt.clock.now()):
        return []
    try:
        with rt.db.write() as session:
            moved: list[tuple[str, Outcome]] = []
            jobs = session.scalars(_locking(rt, _DUE_JOBS), {"now": rt.clock.now(), "limit": limit}).all()
            # The jobs that start here check their runbooks are not archived, and step-less ones look for the delivery
            # of their flow before they end: one query each for the whole batch.
            if len(jobs) > 1:
                read_runbook_statuses(session, [job.runbook_id for job in jobs if job.status == JobStatus.QUEUED.value and not job.parent_job_uuid])
                read_flow_deliveries(session, [job.id for job in jobs if not load_body(session, job.version_id)["steps"]])
            for job in jobs:
                _take(rt, job, worker_id)
                outcome = _move(rt, session, job)
                moved.append((job.uuid, outcome))
                if isinstance(outcome, NeedsCall) or (isinstance(outcome, Blocked) and outcome.child_uuid):
                    break
        return moved
    except Exception:  # noqa: BLE001 - fall back to one transaction per job, where the broken one is logged
        log.warning("moving a batch of jobs failed; driving them one by one", exc_info=True)
        return [(job_uuid, UNMOVED) for job_uuid in claim(rt, worker_id, limit)]


def _move(rt: Runtime, session: Session, job: Job, pending: NeedsCall | None = None, result: Any = None) -> NeedsCall | Blocked | None:
    """Run the machine on a leased job; keep the lease only while an HTTP call is under way."""
    return _run_machine(rt, session, job, pending, result)[0]


def _run_machine(rt: Runtime, session: Session, job: Job, pending: NeedsCall | None, result: Any,
                 step_events: dict[int, StepEvent] | None = None) -> tuple[NeedsCall | Blocked | None, Machine]:
    """``_move``, also handing back the machine that moved the job (``step_events``: the job's, if read with it)."""
    machine = Machine(rt, session, job, step_events_read=step_events)
    if pending is not None:
        machine.apply_result(pending, result)
    outcome = machine.run()
    if isinstance(outcome, NeedsCall):
        machine.begin_attempt(outcome)
    elif isinstance(outcome, Blocked) and outcome.child_id is not None:
        # The driver runs the new child next and then this job again: nobody else should pick it up in between.
        pass
    else:
        job.lease_owner = None
        job.lease_until = None
    return outcome, machine


def follow_up(rt: Runtime, job_uuid: str, outcome: Outcome, worker_id: str, *, policy: OutboundPolicy,
              ended: list[Moved] | None = None, _depth: int = 0, _carry: list[Moved] | None = None) -> JobStatus | None:
    """Finish what a move left: make the HTTP call, run the child, or drive a job that could not be moved.

    Returns the job's status as ``drive`` does (None when there was nothing for this worker to do), and
    fills ``ended`` as ``drive`` does. A move that left nothing (None: the job ended) released the job's
    lease, so there is nothing for this worker to do.
    """
    if outcome is None:
        return None
    if isinstance(outcome, NeedsCall):
        return drive(rt, job_uuid, worker_id, policy=policy, pending=outcome, ended=ended, _depth=_depth, _carry=_carry)
    if isinstance(outcome, Blocked):
        if outcome.child_uuid and drive(rt, outcome.child_uuid, worker_id, policy=policy, _depth=_depth + 1) in TERMINAL:
            return drive(rt, job_uuid, worker_id, policy=policy, ended=ended, _depth=_depth, _carry=_carry)
        if outcome.child_id is not None:
            _release(rt, job_uuid, worker_id)
        return None
    # UNMOVED: leased by a batch that failed, so not moved yet.
    return drive(rt, job_uuid, worker_id, policy=policy, ended=ended, _depth=_depth, _carry=_carry)


def move_new(rt: Runtime, session: Session, job_id: int) -> NeedsCall | Blocked | None:
    """Move a job created in this transaction (and leased to its driver) as far as the database allows.

    What the transaction changed so far is written first: a child that ends at once wakes its waiting parent
    with a plain statement, which must find the parent's row already waiting. A step-less (flow-backed) job
    also has its events fanned out first, since it looks for the delivery of its own invocation; any other
    job's events wait for the commit, to go in with those of the move.
    """
    job = session.get(Job, job_id)
    if load_body(session, job.version_id)["steps"]:
        session.flush()
    else:
        fan_out(session)
    return _move(rt, session, job)


# A job with its step events, in one statement: a move after an HTTP call (or a child's end) reads both anyway.
_WITH_EVENTS = select(Job, StepEvent).outerjoin(StepEvent, StepEvent.job_id == Job.id)
_BY_UUID = _WITH_EVENTS.where(Job.uuid == bindparam("uuid"))
_LEASED_PARENT = _WITH_EVENTS.where(Job.uuid == bindparam("uuid"), Job.lease_owner == bindparam("worker"))


def _read_job(session: Session, query: Any, parameters: dict[str, Any]) -> tuple[Job | None, dict[int, StepEvent]]:
    """Return the job ``query`` (one of the statements above) finds, and its step events by order."""
    job, events = None, {}
    for job, event in session.execute(query, parameters):
        if event is not None:
            events[event.order] = event
    return job, events


def _lock(rt: Runtime, session: Session, job_uuid: str) -> tuple[Job | None, dict[int, StepEvent]]:
    query = _BY_UUID.with_for_update(of=Job) if rt.db.is_postgres else _BY_UUID
    return _read_job(session, query, {"uuid": job_uuid})


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


@dataclass(frozen=True)
class Moved:
    """What one move of a job did: its outcome, that of the child it created (moved too), and the job after it.

    ``job`` and ``step_events`` are the job and its step events (by order) as the move's committed transaction
    left them; ``step_events`` is None when the machine did not need to read them all.
    """

    outcome: NeedsCall | Blocked | None
    child_first: NeedsCall | Blocked | None
    job: Job
    step_events: dict[int, StepEvent] | None

    @property
    def status(self) -> JobStatus:
        """The job's status after the move."""
        return JobStatus(self.job.status)


def _advance(rt: Runtime, session: Session, job: Job, pending: NeedsCall | None = None, result: Any = None,
             step_events: dict[int, StepEvent] | None = None) -> Moved:
    """Move a leased job (``step_events``: its own, if read with it) and, if it just created a child to wait for, the child too."""
    outcome, machine = _run_machine(rt, session, job, pending, result, step_events)
    child_first = move_new(rt, session, outcome.child_id) if isinstance(outcome, Blocked) and outcome.child_id is not None else None
    return Moved(outcome, child_first, job, machine.step_events)


def _resume_parent(rt: Runtime, session: Session, child: Job, worker_id: str) -> Moved | None:
    """Move the waiting parent of a child that just ended, in the child's transaction, if this worker holds the parent.

    On PostgreSQL a parent row someone else has locked (a person acting on it)
    is skipped rather than waited for; its driver then looks at it in a
    transaction of its own.
    """
    query = _LEASED_PARENT.with_for_update(of=Job, skip_locked=True) if rt.db.is_postgres else _LEASED_PARENT
    parent, step_events = _read_job(session, query, {"uuid": child.parent_job_uuid, "worker": worker_id})
    if parent is None or parent.status != JobStatus.WAITING.value:
        return None
    return _advance(rt, session, parent, step_events=step_events)


def drive(rt: Runtime, job_uuid: str, worker_id: str, *, policy: OutboundPolicy, pending: NeedsCall | None = None,
          ended: list[Moved] | None = None, _depth: int = 0, _carry: list[Moved] | None = None) -> JobStatus | None:
    """Run a job, and the children it waits for, until it finishes or waits; return its status (None if another worker owns it).

    ``pending`` is an HTTP call this worker already began (it holds the job's lease): it is made first.
    If the job ends here, the move that ended it is appended to ``ended`` once its transaction has committed.
    A call tree takes as few transactions as it can: a child created by a move
    is moved in the same transaction, and when a child ends, its parent (whose
    lease this worker kept) is moved in the child's last transaction; what that
    did is handed back through ``_carry``.
    """
    result = perform(pending.call, policy) if pending is not None else None
    moved: Moved | None = None
    while True:
        if moved is None:
            with rt.db.write() as session:
                job, step_events = _lock(rt, session, job_uuid)
                if job is None or not _take(rt, job, worker_id):
                    return None
                moved = _advance(rt, session, job, pending, result, step_events)
                if _carry is not None and moved.status.terminal and job.parent_job_uuid:
                    parent_moved = _resume_parent(rt, session, job, worker_id)
                    if parent_moved is not None:
                        _carry.append(parent_moved)
        outcome, status = moved.outcome, moved.status
        if ended is not None and status.terminal:
            ended.append(moved)
        child_first, moved = moved.child_first, None
        pending = outcome if isinstance(outcome, NeedsCall) else None
        if pending is not None:
            result = perform(pending.call, policy)
            continue
        if isinstance(outcome, Blocked) and outcome.child_uuid and _depth < rt.settings.max_call_depth:
            carry: list[Moved] = []
            if outcome.child_id is not None:
                child_status = follow_up(rt, outcome.child_uuid, child_first, worker_id, policy=policy, _depth=_depth + 1, _carry=carry)
            else:
                child_status = drive(rt, outcome.child_uuid, worker_id, policy=policy, _depth=_depth + 1)
            if carry:
                moved = carry[0]
                continue
            if child_status is not None and child_status.terminal:
                continue
            if outcome.child_id is not None:
                _release(rt, job_uuid, worker_id)
        return status


def abandon(rt: Runtime, job_uuid: str, worker_id: str) -> None:
    """Stop holding the call tree of a job whose driving failed: its leases are no longer renewed, and lapse.

    Once they have lapsed (``RUNBOOK_MANAGER_LEASE_SECONDS``) any worker may
    take the jobs up again; a step found in flight is retried or stopped as
    after a crash.
    """
    root = select(Job.root_job_uuid).where(Job.uuid == job_uuid).scalar_subquery()
    with rt.db.write() as session:
        # ``lease_until IS NOT NULL`` (true of every job a worker holds) lets the lookup use ix_jobs_leased.
        session.execute(update(Job).where(Job.lease_owner == worker_id, Job.lease_until.is_not(None), Job.root_job_uuid == root)
                        .values(lease_owner=None))


def _release(rt: Runtime, job_uuid: str, worker_id: str) -> None:
    """Give up the lease kept on a parent while its new child ran: the child now waits, and whoever ends it wakes the parent."""
    with rt.db.write() as session:
        session.execute(update(Job).where(Job.uuid == job_uuid, Job.lease_owner == worker_id).values(lease_owner=None, lease_until=None))
