"""The job state machine: everything a job does that only needs the database.

A ``Machine`` works on one locked job row inside one transaction. ``run``
moves the job as far as it can without leaving the transaction and then says
what comes next: nothing (finished or waiting), a child job worth driving
right away, or an HTTP call the driver must make outside the transaction.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import InitVar, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from webhooks.backoff import compute_backoff
from webhooks.classify import Verdict, classify_response
from webhooks.fanout import describe_target, flow_delivery_state

from .. import metrics
from ..errors import RunnerError
from ..models import Job, Runbook, RunbookStatus, StepEvent, Subscription
from ..runtime import JOBS_DUE, Runtime
from ..services import audit
from ..services.params import render, render_value
from .events import emit
from .http import HttpCall, HttpResult, build_call
from .invoke import create_child
from .states import TERMINAL, EndedBy, JobStatus, StepStatus, StopReason, Waiting, check_transition
from .versions import load_body

__all__ = ["Machine", "NeedsCall", "Blocked", "needs_approval", "read_runbook_statuses"]

# Safety bound on state changes made in one transaction (a runbook has at most a few hundred steps).
MAX_MOVES_PER_RUN = 1000
# Jitter of http step retry delays (fraction of the delay).
DEFAULT_RETRY_JITTER = 0.1

_EVENT_OF = {
    (JobStatus.QUEUED, JobStatus.RUNNING): "job.started",
    (JobStatus.RUNNING, JobStatus.WAITING): "job.waiting",
    (JobStatus.WAITING, JobStatus.RUNNING): "job.running",
    (JobStatus.RUNNING, JobStatus.PAUSED): "job.paused",
    (JobStatus.PAUSED, JobStatus.RUNNING): "job.resumed",
}
_FINAL_EVENT = {
    JobStatus.SUCCEEDED: "job.succeeded",
    JobStatus.FAILED: "job.failed",
    JobStatus.CANCELLED: "job.cancelled",
    JobStatus.STOPPED: "job.stopped_by_system",
}


@dataclass(frozen=True)
class NeedsCall:
    """The current step must call a URL; the driver does it outside the transaction."""

    job_uuid: str
    order: int
    attempt: int
    call: HttpCall


@dataclass(frozen=True)
class Blocked:
    """The job waits; ``child_uuid`` names a child job the driver may run right away.

    ``child_id`` is set when the child was created in this transaction, leased to the parent's driver.
    """

    child_uuid: str | None = None
    child_id: int | None = None


_CONTINUE = object()
_RUNBOOKS = Runbook.__table__
# Built once: every job start reads its runbook's lifecycle status. A batch's ids are written into the statement so that
# PostgreSQL plans it with them (a prepared statement with an IN list of parameters may get a generic, slower plan).
_RUNBOOK_STATUSES = select(_RUNBOOKS.c.id, _RUNBOOKS.c.status).where(
    _RUNBOOKS.c.id.in_(bindparam("ids", expanding=True, literal_execute=True)))
_RUNBOOK_STATUS = select(_RUNBOOKS.c.status).where(_RUNBOOKS.c.id == bindparam("id"))
# Key in ``session.info``: the runbook statuses this transaction read, by runbook id.
_READ_STATUSES = "rbm_runbook_statuses"
_JOBS = Job.__table__
# A child that ended makes its waiting parent due (a plain statement: no flush, no ORM bookkeeping).
_WAKE_PARENT = update(_JOBS).where(_JOBS.c.uuid == bindparam("parent"), _JOBS.c.status == JobStatus.WAITING.value,
                                   _JOBS.c.waiting_for == Waiting.CHILD.value).values(next_run_at=bindparam("now"))


def read_runbook_statuses(session: Session, runbook_ids: Iterable[int]) -> None:
    """Look up the lifecycle status of the runbooks of a batch of jobs about to start with one query, for ``Machine`` to use."""
    read: dict[int, str] = session.info.setdefault(_READ_STATUSES, {})
    missing = sorted({runbook_id for runbook_id in runbook_ids if runbook_id not in read})
    if missing:
        read.update({runbook_id: status for runbook_id, status in session.connection().execute(_RUNBOOK_STATUSES, {"ids": missing})})


def _runbook_status(session: Session, runbook_id: int) -> str | None:
    """A runbook's lifecycle status, as read for this transaction's batch of jobs or else now."""
    status = session.info.get(_READ_STATUSES, {}).get(runbook_id)
    if status is None:
        status = session.connection().execute(_RUNBOOK_STATUS, {"id": runbook_id}).scalar()
    return status


def _job_in_session(session: Session, job_uuid: str) -> Job | None:
    """The job if this transaction already loaded it (a child that just ended, resuming its parent): no need to read it again."""
    for loaded in session.identity_map.values():
        if isinstance(loaded, Job) and loaded.uuid == job_uuid:
            return loaded
    return None


def needs_approval(step: dict[str, Any], environment: str, approval_environments: list[str]) -> bool:
    """Whether a step waits for an approval before it runs in ``environment``."""
    return bool(step.get("requires_approval")) or (bool(step.get("is_destructive")) and environment in approval_environments)


@dataclass
class Machine:
    """Moves one locked job through its steps inside one transaction."""

    rt: Runtime
    session: Session
    job: Job
    # The person whose action is being applied, if any; None when a worker moves the job.
    actor: str | None = None
    # The job's step events by order, when the caller read them with the job (as the driver does after an HTTP call).
    step_events_read: InitVar[dict[int, StepEvent] | None] = None
    now: datetime = field(init=False)
    body: dict[str, Any] = field(init=False)
    _loaded: dict[int, StepEvent] | None = field(init=False, default=None)

    def __post_init__(self, step_events_read: dict[int, StepEvent] | None) -> None:
        self.now = self.rt.clock.now()
        self.body = load_body(self.session, self.job.version_id)
        if self.job.status == JobStatus.QUEUED.value:
            # A job that has not started has no step events: nothing to read, now or after it starts here.
            self._loaded = {}
        elif step_events_read is not None:
            self._loaded = step_events_read

    @property
    def _events(self) -> dict[int, StepEvent]:
        """The job's step events, read on first use (a job that has not started has none to read)."""
        if self._loaded is None:
            rows = self.session.scalars(select(StepEvent).where(StepEvent.job_id == self.job.id))
            self._loaded = {row.order: row for row in rows}
        return self._loaded

    @property
    def step_events(self) -> dict[int, StepEvent] | None:
        """Every step event of the job by order, if this machine has read or made them all; else None."""
        return self._loaded

    # --- helpers ------------------------------------------------------------------------

    @property
    def status(self) -> JobStatus:
        """The job's current status."""
        return JobStatus(self.job.status)

    @property
    def steps(self) -> list[dict[str, Any]]:
        """The steps of the version the job runs."""
        return self.body["steps"]

    def step(self, order: int) -> dict[str, Any]:
        """The step numbered ``order`` (1-based)."""
        return self.steps[order - 1]

    def event(self, order: int) -> StepEvent | None:
        """The StepEvent of step ``order``, if it has started."""
        return self._events.get(order)

    def current_event(self) -> StepEvent | None:
        """The StepEvent of the step the job is at, if it has started."""
        return self._events.get(self.job.cursor)

    def emit(self, type_: str, **extra: Any) -> None:
        """Record an event of this job, now, in the machine's transaction."""
        emit(self.session, self.job, type_, self.now, **extra)

    def _step_ref(self, order: int) -> dict[str, Any]:
        return {"order": order, "title": render(self.step(order)["title"], self.job.parameters)}

    def move(self, target: JobStatus, *, verb: str | None = None, **extra: Any) -> None:
        """Change the job's status through the transition table, with its event and audit entry."""
        current = self.status
        check_transition(current, target, job_uuid=self.job.uuid, verb=verb)
        self.job.status = target.value
        event_type = _FINAL_EVENT.get(target) or _EVENT_OF[(current, target)]
        self.emit(event_type, **extra)
        audit.record(self.session, self.rt.clock, workspace_id=self.job.workspace_id, actor=self.actor or "system",
                     action=event_type, target=self.job.uuid, detail={"from": current.value, "to": target.value, **extra})

    def wake_time(self, extra: datetime | None = None) -> datetime | None:
        """The earliest moment the worker must look at this job again."""
        candidates = [self.job.deadline_at, extra]
        ev = self.current_event()
        if ev is not None and self.job.cursor <= len(self.steps):
            step = self.step(self.job.cursor)
            if step.get("timeout_seconds"):
                candidates.append(ev.started_at + timedelta(seconds=step["timeout_seconds"]))
            overdue = self._overdue_at(step, ev)
            if overdue is not None and not ev.overdue_emitted:
                candidates.append(overdue)
        present = [c for c in candidates if c is not None]
        return min(present) if present else None

    def _overdue_at(self, step: dict[str, Any], ev: StepEvent) -> datetime | None:
        if step.get("est_minutes") is None:
            return None
        return ev.started_at + timedelta(minutes=step["est_minutes"] * self.rt.settings.overdue_factor)

    # --- the loop -------------------------------------------------------------------------

    def run(self) -> NeedsCall | Blocked | None:
        """Move the job as far as the database alone allows."""
        for _ in range(MAX_MOVES_PER_RUN):
            outcome = self._next()
            if outcome is not _CONTINUE:
                return outcome
        raise RuntimeError(f"job {self.job.uuid} made more than {MAX_MOVES_PER_RUN} moves in one transaction")

    def _next(self) -> Any:
        job = self.job
        if self.status.terminal:
            job.next_run_at = None
            return None
        if job.deadline_at is not None and self.now >= job.deadline_at:
            self.stop(StopReason.RUN_TIMEOUT, self._timeout_message())
            return None
        if self.status is JobStatus.QUEUED:
            return self._start()
        if self.status is JobStatus.PAUSED:
            job.next_run_at = self.wake_time()
            return Blocked()
        if job.cursor > len(self.steps):
            return self._finish_steps()
        step = self.step(job.cursor)
        ev = self.current_event()
        if ev is None:
            if job.pause_requested:
                job.pause_requested = False
                self.move(JobStatus.PAUSED, at_step=job.cursor)
                job.waiting_for = None
                job.next_run_at = self.wake_time()
                return Blocked()
            ev = self._begin_step(step)
        return self._work_on(step, ev)

    def _timeout_message(self) -> str:
        own = self.body.get("max_duration_seconds")
        where = ""
        if self.job.cursor and self.job.cursor <= len(self.steps):
            where = f" while at step {self.job.cursor} ({render(self.step(self.job.cursor)['title'], self.job.parameters)!r})"
        if own and self.job.started_at and self.job.deadline_at == self.job.started_at + timedelta(seconds=own):
            return f"the job ran longer than the runbook's max_duration of {own}s{where}; raise max_duration or speed up the slow step"
        return f"the job passed the deadline it inherited from parent job {self.job.parent_job_uuid}{where}"

    def _start(self) -> Any:
        job = self.job
        archived = job.parent_job_uuid is None and \
            _runbook_status(self.session, job.runbook_id) == RunbookStatus.ARCHIVED.value
        if archived:
            self.stop(StopReason.RUNBOOK_ARCHIVED,
                      f"runbook {job.runbook_key} ({job.runbook_name}) was archived while this job was queued; it did not run")
            return None
        self.move(JobStatus.RUNNING)
        job.started_at = self.now
        own = self.body.get("max_duration_seconds")
        if own:
            mine = self.now + timedelta(seconds=own)
            job.deadline_at = min(mine, job.deadline_at) if job.deadline_at else mine
        job.cursor = 1
        return _CONTINUE

    def _begin_step(self, step: dict[str, Any]) -> StepEvent:
        ev = StepEvent(job_id=self.job.id, order=step["order"], title=render(step["title"], self.job.parameters)[:200],
                       status=StepStatus.RUNNING.value, started_at=self.now, output={}, attempts=0, inflight=False,
                       overdue_emitted=False)
        self.session.add(ev)
        self._events[step["order"]] = ev
        self.emit("step.started", step=self._step_ref(step["order"]), action=step["action"]["type"])
        return ev

    def ensure_running(self) -> None:
        """Move a waiting job back to running (a person or the engine is about to act on its step)."""
        if self.status is JobStatus.WAITING:
            self.move(JobStatus.RUNNING)
            self.job.waiting_for = None

    def wait_for(self, what: Waiting, ev: StepEvent | None, *, wake: datetime | None = None) -> Blocked:
        """Park the job until an operator, an approval, a child, a timer or a delivery moves it."""
        job = self.job
        where = {"step": self._step_ref(ev.order)} if ev is not None else {}
        if self.status is JobStatus.RUNNING:
            job.waiting_for = what.value
            self.move(JobStatus.WAITING, waiting_for=what.value, **where)
        elif job.waiting_for != what.value:
            job.waiting_for = what.value
            self.emit("job.waiting", waiting_for=what.value, **where)
        if ev is not None:
            ev.status = StepStatus.WAITING.value
        job.next_run_at = self.wake_time(wake)
        return Blocked()

    def _work_on(self, step: dict[str, Any], ev: StepEvent) -> Any:
        timeout = step.get("timeout_seconds")
        if timeout and self.now >= ev.started_at + timedelta(seconds=timeout):
            self.stop(StopReason.STEP_TIMEOUT,
                      f"step {step['order']} ({ev.title!r}) ran longer than its timeout of {timeout}s", step_status=StepStatus.FAILED)
            return None
        overdue = self._overdue_at(step, ev)
        if overdue is not None and not ev.overdue_emitted and self.now >= overdue:
            ev.overdue_emitted = True
            self.emit("job.step_overdue", step=self._step_ref(step["order"]), est_minutes=step["est_minutes"],
                      running_minutes=round((self.now - ev.started_at).total_seconds() / 60, 1))
        if needs_approval(step, self.job.environment, self.rt.settings.approval_environment_ids) and ev.approved_at is None:
            return self.wait_for(Waiting.APPROVAL, ev)
        kind = step["action"]["type"]
        if kind == "manual":
            return self.wait_for(Waiting.OPERATOR, ev)
        if kind == "wait":
            if ev.wake_at is None:
                ev.wake_at = self.now + timedelta(seconds=step["action"]["seconds"])
            if self.now >= ev.wake_at:
                self.ensure_running()
                self.complete(ev, StepStatus.DONE, output={"waited_seconds": step["action"]["seconds"]})
                return _CONTINUE
            return self.wait_for(Waiting.TIMER, ev, wake=ev.wake_at)
        if kind == "runbook":
            return self._work_on_child(step, ev)
        return self._work_on_http(step, ev)

    # --- completing steps and jobs ----------------------------------------------------------

    def complete(self, ev: StepEvent, status: StepStatus, *, output: dict[str, Any] | None = None, note: str | None = None) -> None:
        """Record a step's outcome and move the cursor past it."""
        ev.status = status.value
        ev.completed_at = self.now
        ev.actor = self.actor or "system"
        if note is not None:
            ev.note = note
        if output:
            ev.output = {**(ev.output or {}), **output}
        ev.inflight = False
        ev.wake_at = None
        self.job.cursor = ev.order + 1
        self.emit("step.completed", step={**self._step_ref(ev.order), "status": status.value, "note": note,
                                          "actor": ev.actor, "output": ev.output})
        metrics.STEPS_EXECUTED.labels(self.step(ev.order)["action"]["type"], status.value).inc()

    def _finish_steps(self) -> Any:
        if not self.steps:
            state, delivery = flow_delivery_state(self.session, self.job)
            if state == "pending":
                return self.wait_for(Waiting.DELIVERY, None)
            if state == "failed":
                subscription = self.session.get(Subscription, delivery.subscription_id)
                last = f"HTTP {delivery.last_status}" if delivery.last_status else (delivery.last_error or "no answer")
                self.stop(StopReason.DELIVERY_FAILED,
                          f"the flow subscribed to {self.job.runbook_key} at {describe_target(subscription)} did not acknowledge "
                          f"job {self.job.uuid} ({delivery.status} after {delivery.attempts} attempts; last: {last})")
                return None
        self.ensure_running()
        self.finish(JobStatus.SUCCEEDED, EndedBy.PERSON if self.actor else EndedBy.SYSTEM)
        return None

    def finish(self, target: JobStatus, ended_by: EndedBy, *, reason: StopReason | None = None, message: str | None = None,
               step_status: StepStatus = StepStatus.CANCELLED) -> None:
        """End the job: seal it, close its open step, tell a waiting parent, end its live children."""
        job = self.job
        ev = self.current_event()
        open_step = ev is not None and ev.status in (StepStatus.RUNNING.value, StepStatus.WAITING.value)
        extra: dict[str, Any] = {}
        if reason is not None:
            extra = {"stop_reason": reason.value, "message": message, "stopped_at": self.now.isoformat(),
                     "step": self._step_ref(job.cursor) if 1 <= job.cursor <= len(self.steps) else None}
        elif message:
            extra = {"message": message}
        job.ended_at = self.now
        job.ended_by = ended_by.value
        job.ended_by_actor = self.actor if ended_by is EndedBy.PERSON else None
        job.stop_reason = reason.value if reason else None
        job.message = message
        job.stopped_step = job.cursor if (reason or target is JobStatus.FAILED) and 1 <= job.cursor <= len(self.steps) else None
        if open_step:
            ev.status = step_status.value
            ev.completed_at = self.now
            ev.inflight = False
            ev.wake_at = None
            if message and not ev.note:
                ev.note = message
        self.move(target, ended_by=ended_by.value, **extra)
        job.waiting_for = None
        job.next_run_at = None
        job.lease_owner = None
        job.lease_until = None
        job.pause_requested = False
        metrics.JOBS_FINISHED.labels(target.value).inc()
        if job.parent_job_uuid:
            self.session.connection().execute(_WAKE_PARENT, {"parent": job.parent_job_uuid, "now": self.now})
            self.session.info[JOBS_DUE] = True
        if target is not JobStatus.SUCCEEDED:
            self._end_children(StopReason.PARENT_ABORTED if ended_by is EndedBy.PERSON and target is JobStatus.CANCELLED
                               else StopReason.PARENT_ENDED)

    def _end_children(self, reason: StopReason) -> None:
        children = self.session.scalars(
            select(Job).where(Job.workspace_id == self.job.workspace_id, Job.parent_job_uuid == self.job.uuid,
                              Job.status.notin_([s.value for s in TERMINAL])).with_for_update()
        )
        for child in children:
            who = f" by {self.actor}" if reason is StopReason.PARENT_ABORTED and self.actor else ""
            verb = "aborted" if reason is StopReason.PARENT_ABORTED else self.job.status
            Machine(self.rt, self.session, child, actor=None).finish(
                JobStatus.CANCELLED, EndedBy.PARENT, reason=reason,
                message=f"parent job {self.job.uuid} ({self.job.runbook_key}) was {verb}{who}",
            )

    def stop(self, reason: StopReason, message: str, *, step_status: StepStatus = StepStatus.CANCELLED) -> None:
        """End the job as stopped by the system, with a stable reason and a message a person can act on."""
        self.finish(JobStatus.STOPPED, EndedBy.SYSTEM, reason=reason, message=message, step_status=step_status)

    # --- child runbooks ----------------------------------------------------------------------

    def _work_on_child(self, step: dict[str, Any], ev: StepEvent) -> Any:
        action = step["action"]
        child_uuid = (ev.output or {}).get("child_job_uuid")
        if child_uuid is None:
            self.ensure_running()
            try:
                child = create_child(self.rt, self.session, self.job, step, render_value(action["parameters"], self.job.parameters), self.now)
            except RunnerError as exc:
                self.stop(StopReason.CALL_REFUSED, f"step {step['order']} ({ev.title!r}) could not call runbook {action['runbook']!r}: {exc.detail}",
                          step_status=StepStatus.FAILED)
                return None
            ev.output = {"child_job_uuid": child.uuid, "child_runbook": child.runbook_key}
            if not action.get("wait", True):
                self.complete(ev, StepStatus.DONE, output={"waited": False})
                return _CONTINUE
            self.wait_for(Waiting.CHILD, ev)
            return Blocked(child_uuid=child.uuid, child_id=child.id if child.lease_owner else None)
        child = _job_in_session(self.session, child_uuid) or self.session.scalar(select(Job).where(Job.uuid == child_uuid))
        status = JobStatus(child.status)
        if not status.terminal:
            self.wait_for(Waiting.CHILD, ev)
            return Blocked(child_uuid=child.uuid)
        self.ensure_running()
        if status is JobStatus.SUCCEEDED:
            self.complete(ev, StepStatus.DONE, output={"child_status": status.value})
            return _CONTINUE
        ev.output = {**ev.output, "child_status": status.value}
        reason = {JobStatus.FAILED: StopReason.CHILD_FAILED, JobStatus.STOPPED: StopReason.CHILD_STOPPED}.get(status, StopReason.CHILD_CANCELLED)
        because = f": {child.message}" if child.message else ""
        self.stop(reason, f"child runbook {child.runbook_key} ({child.runbook_name}) job {child.uuid} {status.value} at step "
                          f"{child.stopped_step or child.cursor}{because}", step_status=StepStatus.FAILED)
        return None

    # --- http steps ---------------------------------------------------------------------------

    def _work_on_http(self, step: dict[str, Any], ev: StepEvent) -> Any:
        action = step["action"]
        if ev.inflight:
            host = build_call(action, self.job.parameters, default_timeout=self.rt.settings.http_timeout).host
            if not step.get("idempotent"):
                self.stop(StopReason.INTERRUPTED,
                          f"step {step['order']} ({ev.title!r}) was interrupted while calling {host} (attempt {ev.attempts}) and is not "
                          "marked idempotent, so it was not repeated; check what it did on that host, then start a new job",
                          step_status=StepStatus.FAILED)
                return None
            ev.inflight = False
            self.emit("step.retrying", step=self._step_ref(step["order"]), attempt=ev.attempts, reason="interrupted")
        self.ensure_running()
        if ev.wake_at is not None and self.now < ev.wake_at:
            self.job.next_run_at = self.wake_time(ev.wake_at)
            return Blocked()
        call = build_call(action, self.job.parameters, default_timeout=self.rt.settings.http_timeout)
        return NeedsCall(self.job.uuid, step["order"], ev.attempts + 1, call)

    def begin_attempt(self, need: NeedsCall) -> None:
        """Mark the attempt as under way (so a crash is noticed) and extend the lease past its timeout."""
        ev = self.event(need.order)
        ev.attempts = need.attempt
        ev.inflight = True
        ev.status = StepStatus.RUNNING.value
        self.job.lease_until = self.now + timedelta(seconds=2 * need.call.timeout + self.rt.settings.lease_seconds)

    def apply_result(self, need: NeedsCall, result: HttpResult) -> None:
        """Record what an attempt got back: done, retry later, or stop."""
        ev = self.event(need.order)
        if ev is None or self.status.terminal or self.job.cursor != need.order or ev.attempts != need.attempt or not ev.inflight:
            if ev is not None and ev.attempts == need.attempt:
                ev.output = {**(ev.output or {}), "late_result": result.output()}
            return
        ev.inflight = False
        step = self.step(need.order)
        action = step["action"]
        ev.output = {**result.output(), "attempts": ev.attempts, "method": need.call.method, "host": need.call.host}
        if result.refused:
            self.stop(StopReason.OUTBOUND_REFUSED, f"step {need.order} ({ev.title!r}) may not call {need.call.host}: {result.refused}",
                      step_status=StepStatus.FAILED)
            return
        verdict = classify_response(result.status, result.headers, error=result.error, expected=action.get("expected_status") or ())
        if verdict.verdict is Verdict.SUCCESS:
            self.complete(ev, StepStatus.DONE)
            return
        if verdict.verdict is Verdict.RETRY and ev.attempts <= action.get("retries", 0):
            delay = compute_backoff(ev.attempts, base=action["backoff_seconds"], factor=action["backoff_factor"],
                                    max_delay=action["backoff_max_seconds"], jitter=DEFAULT_RETRY_JITTER)
            if verdict.retry_after is not None:
                delay = max(delay, min(verdict.retry_after, action["backoff_max_seconds"]))
            ev.wake_at = self.now + timedelta(seconds=delay)
            self.emit("step.retrying", step=self._step_ref(need.order), attempt=ev.attempts, reason=verdict.reason,
                      retry_in_seconds=round(delay, 3))
            self.job.next_run_at = self.wake_time(ev.wake_at)
            return
        tries = f"after {ev.attempts} attempt{'s' if ev.attempts != 1 else ''}"
        self.stop(StopReason.STEP_FAILED,
                  f"step {need.order} ({ev.title!r}) failed {tries}: {need.call.method} {need.call.host} answered {verdict.reason}",
                  step_status=StepStatus.FAILED)
