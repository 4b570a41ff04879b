"""Job use cases for the API, the CLI and the console: invoke, read, and act on jobs."""
from __future__ import annotations

import time
from typing import Any

from sqlalchemy import inspect, or_, select, text, union_all
from sqlalchemy.orm import Session, aliased

from webhooks.outbound import OutboundPolicy

from ..auth import Action, Actor, require, role_satisfies
from ..errors import Conflict, Forbidden, IllegalTransition
from ..models import Event, Job, Runbook
from ..models.job import LIVE_JOBS, UNSUCCESSFUL_JOBS
from ..runtime import JOBS_DUE, Runtime
from ..services import audit
from ..services.pagination import MAX_ROW_NUMBER, cut_page, decode_cursor
from .driver import Moved, drive, follow_up, move_new
from .invoke import JobRequest, Trigger, create_job
from .machine import Blocked, Machine, NeedsCall
from .report import event_to_dict, find_job, job_to_dict
from .states import EndedBy, JobStatus, StepStatus, Waiting
from .worker import new_worker_id

__all__ = ["invoke", "get_job", "list_jobs", "job_events", "step_action", "pause", "resume", "abort", "wait_for_end"]

# Longest a client may ask an invocation to wait for the job to end.
MAX_WAIT_SECONDS = 300
# How often a waiting invocation looks at its job again when it cannot drive it itself.
WAIT_POLL_SECONDS = 0.02


def invoke(rt: Runtime, actor: Actor, ref: str, data: dict[str, Any], *, idempotency_key: str | None,
           trigger_kind: str = "api", require_callable: bool = True) -> tuple[dict[str, Any], bool]:
    """Start a job; with ``wait`` drive it here until it ends or the time is up. Returns (job, finished)."""
    require(actor, Action.EXECUTE)
    wait = data.get("wait")
    driver = new_worker_id("api") if wait else None
    request = JobRequest(
        workspace_id=actor.workspace_id, runbook_ref=ref, parameters=data.get("parameters", {}),
        trigger=Trigger(trigger_kind, actor.subject, actor.subject if trigger_kind == "person" else None),
        idempotency_key=idempotency_key, change_ref=data.get("change_ref"), incident_ref=data.get("incident_ref"),
        require_callable=require_callable, driver=driver,
    )
    if not wait:
        job, _created = create_job(rt, request)
        with rt.db.read() as session:
            return job_to_dict(rt, session, job, with_steps=False), False
    # The job is created leased to this thread, which moves it in the same transaction and then drives it on.
    first: list[NeedsCall | Blocked | None] = []

    def move(session: Session, new: Job) -> None:
        # Replace, not add: a retried insert runs this again after rolling the first attempt back.
        first[:] = [move_new(rt, session, new.id)]

    job, created = create_job(rt, request, then=move)
    return wait_for_end(rt, actor, job.uuid, float(wait), worker_id=driver, first=first if created else None)


def wait_for_end(rt: Runtime, actor: Actor, job_uuid: str, seconds: float, *, worker_id: str | None = None,
                 first: list[NeedsCall | Blocked | None] | None = None) -> tuple[dict[str, Any], bool]:
    """Drive the job from this thread while it is due, else watch it, until it ends or ``seconds`` pass.

    ``first`` holds what moving a just-created job in its creating transaction left to do.
    """
    deadline = time.monotonic() + min(seconds, MAX_WAIT_SECONDS)
    policy = OutboundPolicy.from_setting(rt.settings.outbound_allowlist)
    worker_id = worker_id or new_worker_id("api")
    ended: list[Moved] = []
    if first:
        status = follow_up(rt, job_uuid, first[0], worker_id, policy=policy, ended=ended)
    else:
        status = drive(rt, job_uuid, worker_id, policy=policy, ended=ended)
    while True:
        if status is None:
            with rt.db.read() as session:
                status = JobStatus(session.scalar(select(Job.status).where(Job.uuid == job_uuid)))
        if status.terminal or time.monotonic() >= deadline:
            break
        time.sleep(WAIT_POLL_SECONDS)
        status = drive(rt, job_uuid, worker_id, policy=policy, ended=ended)
    if ended and ended[-1].job.workspace_id == actor.workspace_id and _fully_loaded(ended[-1]):
        # This thread ended the job, and an ended job no longer changes: answer with it as its last transaction left it.
        with rt.db.connect() as connection:
            return job_to_dict(rt, connection, ended[-1].job, step_events=ended[-1].step_events), True
    with rt.db.read() as session:
        job = find_job(session, actor, job_uuid)
        return job_to_dict(rt, session, job), JobStatus(job.status).terminal


def _fully_loaded(moved: Moved) -> bool:
    """Whether the job and step events a move left hold every column, so that shaping them reads nothing more."""
    if moved.step_events is None:
        return False
    return not any(inspect(row).unloaded for row in (moved.job, *moved.step_events.values()))


def get_job(rt: Runtime, actor: Actor, job_uuid: str) -> dict[str, Any]:
    """Read one job with its step timeline."""
    require(actor, Action.VIEW_PUBLISHED)
    with rt.db.read() as session:
        return job_to_dict(rt, session, find_job(session, actor, job_uuid))


def list_jobs(rt: Runtime, actor: Actor, query: dict[str, Any]) -> dict[str, Any]:
    """List jobs, newest first, with filters."""
    require(actor, Action.VIEW_PUBLISHED)
    position = decode_cursor(query.get("cursor"), keys=("before",))
    statement = select(Job).where(Job.workspace_id == actor.workspace_id)
    if position:
        statement = statement.where(Job.id < position["before"])
    if query.get("parent"):
        statement = statement.where(Job.parent_job_uuid == query["parent"])
    if query.get("triggered_by"):
        statement = statement.where(Job.triggered_by == query["triggered_by"])
    statuses = list(dict.fromkeys(s.strip() for s in (query.get("status") or "").split(",") if s.strip()))
    limit = query["limit"]
    with rt.db.read() as session:
        if query.get("runbook"):
            statement = statement.where(_of_runbook(session, actor.workspace_id, query["runbook"]))
        rows, next_cursor = cut_page(_newest(session, statement, statuses, limit + 1), limit, lambda last: {"before": last.id})
        return {"items": [job_to_dict(rt, session, r, with_steps=False) for r in rows], "next_cursor": next_cursor}


def _newest(session: Session, statement: Any, statuses: list[str], count: int) -> list[Job]:
    """The ``count`` newest jobs ``statement`` selects, of any of ``statuses`` (all when empty).

    Each status is read newest first along the index that holds it; several
    are read in one statement, one part per status, merged. In one query
    with all the statuses SQLite would rather walk every job of the workspace
    in id order than sort the few that match; in several statements, a job
    moving between two of the statuses meanwhile could come twice or not at all.
    """
    newest = statement.order_by(Job.id.desc()).limit(count)
    parts = [newest.where(Job.status == status, *_held_by_index(status)) for status in statuses]
    if len(parts) < 2:
        return list(session.scalars(parts[0] if parts else newest))
    merged = aliased(Job, union_all(*(select(part.subquery()) for part in parts)).subquery())
    return list(session.scalars(select(merged).order_by(merged.id.desc()).limit(count)))


def _held_by_index(status: str) -> tuple[Any, ...]:
    """The condition of the partial index that holds the jobs of ``status``, stated as the index states it."""
    if status == JobStatus.SUCCEEDED.value:
        return ()
    return (text(UNSUCCESSFUL_JOBS),) if JobStatus(status).terminal else (text(LIVE_JOBS),)


def _of_runbook(session: Session, workspace_id: int, ref: str) -> Any:
    """The jobs of the runbook whose key or name is ``ref``, by its id: its (runbook, id) index then serves the page.

    A name no runbook holds any more still finds the jobs recorded under it.
    """
    ids = session.scalars(select(Runbook.id).where(Runbook.workspace_id == workspace_id, or_(Runbook.key == ref, Runbook.name == ref))).all()
    return Job.runbook_id.in_(ids) if ids else or_(Job.runbook_key == ref, Job.runbook_name == ref)


def job_events(rt: Runtime, actor: Actor, job_uuid: str, *, after: int, limit: int) -> dict[str, Any]:
    """Read a job's events after sequence number ``after``, in order."""
    require(actor, Action.VIEW_PUBLISHED)
    with rt.db.read() as session:
        job = find_job(session, actor, job_uuid)
        # No event is numbered past MAX_ROW_NUMBER, and the store cannot compare larger numbers.
        seq_after = min(after, MAX_ROW_NUMBER)
        rows = list(session.scalars(select(Event).where(Event.job_id == job.id, Event.seq > seq_after).order_by(Event.seq).limit(limit)))
        items = [event_to_dict(e) for e in rows]
    return {"items": items, "next_after": items[-1]["seq"] if items else after}


def _settle(rt: Runtime, machine: Machine) -> None:
    """Push the job on after a person's action; leave HTTP calls and children to the workers."""
    job = machine.job
    if job.lease_until is not None and job.lease_until >= machine.now:
        job.next_run_at = machine.now
        machine.session.info[JOBS_DUE] = True
        return
    outcome = machine.run()
    if isinstance(outcome, NeedsCall) or (isinstance(outcome, Blocked) and outcome.child_uuid):
        job.next_run_at = machine.now
        machine.session.info[JOBS_DUE] = True


def _act(rt: Runtime, actor: Actor, job_uuid: str, apply: Any, *, audit_action: str, detail: dict[str, Any] | None = None,
         permission: Action = Action.OPERATE) -> dict[str, Any]:
    require(actor, permission)
    with rt.db.write() as session:
        job = find_job(session, actor, job_uuid, lock=True, postgres=rt.db.is_postgres)
        machine = Machine(rt, session, job, actor=actor.subject)
        apply(machine)
        audit.record(session, rt.clock, workspace_id=actor.workspace_id, actor=actor, action=audit_action, target=job.uuid,
                     detail={"runbook": job.runbook_key, **(detail or {})})
        session.flush()
        return job_to_dict(rt, session, job)


def _open_step(machine: Machine, order: int, allowed: set[Waiting], verb: str) -> Any:
    job = machine.job
    status = machine.status
    if status.terminal:
        raise IllegalTransition(f"cannot {verb} step {order}: job {job.uuid} is {status.value}", current_status=status.value)
    if order != job.cursor or machine.current_event() is None:
        at = f"step {job.cursor}" if 0 < job.cursor <= len(machine.steps) else "no step"
        raise Conflict(f"cannot {verb} step {order}: it is not the current step (job {job.uuid} is {status.value} at {at})",
                       current_status=status.value, current_step=job.cursor)
    waiting = Waiting(job.waiting_for) if status is JobStatus.WAITING and job.waiting_for else None
    if waiting not in allowed:
        if waiting is Waiting.APPROVAL:
            raise Conflict(f"cannot {verb} step {order}: it needs an approval first", current_status=status.value, waiting_for=waiting.value)
        what = f"waiting for {waiting.value}" if waiting else status.value
        raise Conflict(f"cannot {verb} step {order}: the step is {what}, not waiting for a person",
                       current_status=status.value, waiting_for=job.waiting_for)
    return machine.current_event()


def step_action(rt: Runtime, actor: Actor, job_uuid: str, order: int, action: str, note: str | None) -> dict[str, Any]:
    """Apply an operator's done / skip / fail / approve to the current step."""

    def apply(machine: Machine) -> None:
        if action == "done":
            ev = _open_step(machine, order, {Waiting.OPERATOR}, "mark done")
            machine.ensure_running()
            machine.complete(ev, StepStatus.DONE, note=note)
        elif action == "skip":
            ev = _open_step(machine, order, {Waiting.OPERATOR, Waiting.APPROVAL}, "skip")
            machine.ensure_running()
            machine.complete(ev, StepStatus.SKIPPED, note=note)
        elif action == "fail":
            ev = _open_step(machine, order, {Waiting.OPERATOR, Waiting.APPROVAL}, "fail")
            ev.note = note
            machine.finish(JobStatus.FAILED, EndedBy.PERSON, message=f"step {order} ({ev.title!r}) marked failed by {actor.subject}: {note}",
                           step_status=StepStatus.FAILED)
            return
        elif action == "approve":
            owner_role = machine.step(order).get("owner_role") if 1 <= order <= len(machine.steps) else None
            if owner_role is None:
                require(actor, Action.OPERATE)
            elif not role_satisfies(actor.role, owner_role):
                raise Forbidden(
                    f"step {order} must be approved by role {owner_role!r} or higher; {actor.subject} is {actor.role.value!r}",
                    required_role=owner_role,
                )
            ev = _open_step(machine, order, {Waiting.APPROVAL}, "approve")
            ev.approved_by = actor.subject
            ev.approved_at = machine.now
            machine.emit("step.approved", step={"order": order, "title": ev.title}, approved_by=actor.subject, note=note)
            machine.ensure_running()
        _settle(rt, machine)

    # Approvals are checked against the step's owner_role inside apply; every other action needs an operator.
    permission = Action.VIEW_PUBLISHED if action == "approve" else Action.OPERATE
    return _act(rt, actor, job_uuid, apply, audit_action=f"step.{action}", detail={"step": order, "note": note}, permission=permission)


def pause(rt: Runtime, actor: Actor, job_uuid: str) -> dict[str, Any]:
    """Ask the job to pause at the next step boundary."""

    def apply(machine: Machine) -> None:
        status = machine.status
        if status.terminal or status is JobStatus.PAUSED:
            raise IllegalTransition(f"cannot pause: job {machine.job.uuid} is {status.value}", current_status=status.value)
        if not machine.job.pause_requested:
            machine.job.pause_requested = True
            machine.emit("job.pause_requested", requested_by=actor.subject)
            if status is JobStatus.QUEUED:
                _settle(rt, machine)

    return _act(rt, actor, job_uuid, apply, audit_action="job.pause")


def resume(rt: Runtime, actor: Actor, job_uuid: str) -> dict[str, Any]:
    """Continue a paused job (or withdraw a pause that has not taken effect yet)."""

    def apply(machine: Machine) -> None:
        job = machine.job
        if machine.status is JobStatus.PAUSED:
            machine.move(JobStatus.RUNNING, verb="resume")
            job.next_run_at = machine.now
            _settle(rt, machine)
        elif job.pause_requested and not machine.status.terminal:
            job.pause_requested = False
            machine.emit("job.pause_withdrawn", requested_by=actor.subject)
        else:
            raise IllegalTransition(f"cannot resume: job {job.uuid} is {machine.status.value}, not paused",
                                    current_status=machine.status.value)

    return _act(rt, actor, job_uuid, apply, audit_action="job.resume")


def abort(rt: Runtime, actor: Actor, job_uuid: str, reason: str | None = None) -> dict[str, Any]:
    """End the job now as cancelled by a person; its running children are cancelled too."""

    def apply(machine: Machine) -> None:
        status = machine.status
        if status.terminal:
            raise IllegalTransition(f"cannot abort: job {machine.job.uuid} is already {status.value}", current_status=status.value)
        message = f"aborted by {actor.subject}" + (f": {reason}" if reason else "")
        machine.finish(JobStatus.CANCELLED, EndedBy.PERSON, message=message)

    return _act(rt, actor, job_uuid, apply, audit_action="job.abort", detail={"reason": reason})

