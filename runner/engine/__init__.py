"""The execution engine: jobs, their state machine, workers and operator actions. Never imports Flask."""
from .states import TERMINAL, TRANSITIONS, EndedBy, JobStatus, StepStatus, StopReason, Waiting
from .worker import JobWorker

__all__ = ["JobStatus", "StepStatus", "StopReason", "EndedBy", "Waiting", "TRANSITIONS", "TERMINAL", "JobWorker"]
