"""Job states, the one table of allowed transitions, stop reasons and who ended a job."""
from __future__ import annotations

from enum import Enum

from ..errors import IllegalTransition

__all__ = ["JobStatus", "StepStatus", "StopReason", "EndedBy", "Waiting", "TRANSITIONS", "TERMINAL", "check_transition"]


class JobStatus(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    STOPPED = "stopped"

    @property
    def terminal(self) -> bool:
        """Whether the job has ended (it is sealed and never moves again)."""
        return self in TERMINAL


TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.STOPPED})

# Every allowed move of a job; anything else is an IllegalTransition (409).
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.CANCELLED, JobStatus.STOPPED}),
    JobStatus.RUNNING: frozenset({JobStatus.PAUSED, JobStatus.WAITING, JobStatus.SUCCEEDED, JobStatus.FAILED,
                                  JobStatus.CANCELLED, JobStatus.STOPPED}),
    JobStatus.WAITING: frozenset({JobStatus.RUNNING, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.STOPPED}),
    JobStatus.PAUSED: frozenset({JobStatus.RUNNING, JobStatus.CANCELLED, JobStatus.STOPPED}),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
    JobStatus.STOPPED: frozenset(),
}


def check_transition(current: JobStatus, target: JobStatus, *, job_uuid: str, verb: str | None = None) -> None:
    """Raise IllegalTransition unless ``current`` may move to ``target``."""
    if target not in TRANSITIONS[current]:
        what = verb or f"move to {target.value}"
        raise IllegalTransition(f"cannot {what}: job {job_uuid} is {current.value}", current_status=current.value)


class StepStatus(str, Enum):
    RUNNING = "running"
    WAITING = "waiting"
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Waiting(str, Enum):
    """What a waiting job waits for."""

    OPERATOR = "operator"
    APPROVAL = "approval"
    CHILD = "child"
    TIMER = "timer"
    DELIVERY = "delivery"


class StopReason(str, Enum):
    """Stable codes of system stops (status ``stopped``) and cascaded cancellations."""

    RUN_TIMEOUT = "run_timeout"
    STEP_TIMEOUT = "step_timeout"
    STEP_FAILED = "step_failed"
    CHILD_FAILED = "child_failed"
    CHILD_STOPPED = "child_stopped"
    CHILD_CANCELLED = "child_cancelled"
    CALL_REFUSED = "call_refused"
    OUTBOUND_REFUSED = "outbound_refused"
    INTERRUPTED = "interrupted"
    RUNBOOK_ARCHIVED = "runbook_archived"
    PARAMS_INVALID = "params_invalid"
    RUNBOOK_UNAVAILABLE = "runbook_unavailable"
    DELIVERY_FAILED = "delivery_failed"
    # Reasons of children cancelled with their parent (ended_by parent).
    PARENT_ABORTED = "parent_aborted"
    PARENT_ENDED = "parent_ended"


class EndedBy(str, Enum):
    PERSON = "person"
    SYSTEM = "system"
    PARENT = "parent"
