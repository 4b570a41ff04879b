"""Invoking runbooks and acting on jobs."""
from __future__ import annotations

from typing import Any

from flask import request, url_for
from flask.views import MethodView

from ..engine import control
from ..schemas.job import (
    AbortSchema,
    EventQuerySchema,
    FailSchema,
    InvokeSchema,
    JobEnvelopeSchema,
    JobEventPageSchema,
    JobListQuerySchema,
    JobPageSchema,
    JobSchema,
    SkipSchema,
    StepNoteSchema,
)
from .blueprint import Blueprint
from .context import actor, runtime

blp = Blueprint("jobs", __name__, url_prefix="/api/v1/ws/<ws>", description="Run runbooks as jobs, watch them and act on them.")

IDEMPOTENCY_HEADER = "Idempotency-Key"


@blp.route("/runbooks/<key>/jobs", methods=["POST"])
@blp.arguments(InvokeSchema)
@blp.response(202, JobEnvelopeSchema)
@blp.alt_response(200, schema=JobEnvelopeSchema, description="The job ended within `wait` seconds.")
@blp.doc(parameters=[{"in": "header", "name": IDEMPOTENCY_HEADER, "schema": {"type": "string"}, "required": False,
                      "description": "A retry with the same key and body returns the same job."}])
def invoke(data: dict[str, Any], ws: str, key: str) -> Any:
    """Invoke a published, callable runbook: answers 202 with the job's UUID (200 when `wait` saw it end)."""
    job, finished = control.invoke(runtime(), actor(), key, data, idempotency_key=request.headers.get(IDEMPOTENCY_HEADER))
    location = url_for("jobs.Job", ws=ws, job_uuid=job["uuid"])
    return {"job": job}, 200 if finished else 202, {"Location": location}


@blp.route("/jobs")
class Jobs(MethodView):
    @blp.arguments(JobListQuerySchema, location="query")
    @blp.response(200, JobPageSchema)
    def get(self, query: dict[str, Any], ws: str) -> dict[str, Any]:
        """List jobs, newest first."""
        return control.list_jobs(runtime(), actor(), query)


@blp.route("/jobs/<job_uuid>")
class Job(MethodView):
    @blp.response(200, JobSchema)
    def get(self, ws: str, job_uuid: str) -> dict[str, Any]:
        """Read a job: status, step timeline, timing, ETA, stop message and rollback notes."""
        return control.get_job(runtime(), actor(), job_uuid)


@blp.route("/jobs/<job_uuid>/events")
class JobEvents(MethodView):
    @blp.arguments(EventQuerySchema, location="query")
    @blp.response(200, JobEventPageSchema)
    def get(self, query: dict[str, Any], ws: str, job_uuid: str) -> dict[str, Any]:
        """Read a job's events after sequence number `after`, in order."""
        return control.job_events(runtime(), actor(), job_uuid, after=query["after"], limit=query["limit"])


@blp.route("/jobs/<job_uuid>/pause", methods=["POST"])
@blp.response(200, JobSchema)
def pause(ws: str, job_uuid: str) -> dict[str, Any]:
    """Pause at the next step boundary."""
    return control.pause(runtime(), actor(), job_uuid)


@blp.route("/jobs/<job_uuid>/resume", methods=["POST"])
@blp.response(200, JobSchema)
def resume(ws: str, job_uuid: str) -> dict[str, Any]:
    """Resume a paused job."""
    return control.resume(runtime(), actor(), job_uuid)


@blp.route("/jobs/<job_uuid>/abort", methods=["POST"])
@blp.arguments(AbortSchema)
@blp.response(200, JobSchema)
def abort(data: dict[str, Any], ws: str, job_uuid: str) -> dict[str, Any]:
    """End the job now as cancelled; its running children are cancelled too."""
    return control.abort(runtime(), actor(), job_uuid, data.get("reason"))


@blp.route("/jobs/<job_uuid>/steps/<int:order>/done", methods=["POST"])
@blp.arguments(StepNoteSchema)
@blp.response(200, JobSchema)
def done(data: dict[str, Any], ws: str, job_uuid: str, order: int) -> dict[str, Any]:
    """Mark the current manual step done."""
    return control.step_action(runtime(), actor(), job_uuid, order, "done", data.get("note"))


@blp.route("/jobs/<job_uuid>/steps/<int:order>/skip", methods=["POST"])
@blp.arguments(SkipSchema)
@blp.response(200, JobSchema)
def skip(data: dict[str, Any], ws: str, job_uuid: str, order: int) -> dict[str, Any]:
    """Skip the current step, with a reason."""
    return control.step_action(runtime(), actor(), job_uuid, order, "skip", data["reason"])


@blp.route("/jobs/<job_uuid>/steps/<int:order>/fail", methods=["POST"])
@blp.arguments(FailSchema)
@blp.response(200, JobSchema)
def fail(data: dict[str, Any], ws: str, job_uuid: str, order: int) -> dict[str, Any]:
    """Mark the current step failed: the job ends as failed."""
    return control.step_action(runtime(), actor(), job_uuid, order, "fail", data["note"])


@blp.route("/jobs/<job_uuid>/steps/<int:order>/approve", methods=["POST"])
@blp.arguments(StepNoteSchema)
@blp.response(200, JobSchema)
def approve(data: dict[str, Any], ws: str, job_uuid: str, order: int) -> dict[str, Any]:
    """Approve the current step; the approver's role must satisfy the step's owner_role."""
    return control.step_action(runtime(), actor(), job_uuid, order, "approve", data.get("note"))
