"""Jobs: invoking, reading, controlling, and their events."""
from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from ..engine.invoke import TRIGGER_KINDS
from ..engine.states import JobStatus
from .common import PageQuerySchema, PageSchema, StrictSchema


class InvokeSchema(StrictSchema):
    parameters = fields.Raw(load_default=dict, metadata={"description": "Values for the runbook's parameters (a JSON object)."})
    wait = fields.Float(load_default=None, allow_none=True, validate=validate.Range(0, 300),
                        metadata={"description": "Seconds to wait for the job to end: 200 with the finished job if it ends in time, else 202."})
    change_ref = fields.String(load_default=None, allow_none=True, validate=validate.Length(1, 120))
    incident_ref = fields.String(load_default=None, allow_none=True, validate=validate.Length(1, 120))


class RunbookRefSchema(ma.Schema):
    key = fields.String()
    name = fields.String()
    title = fields.String()
    version = fields.Integer()


class StepTimelineSchema(ma.Schema):
    order = fields.Integer()
    title = fields.String()
    description = fields.String()
    verification = fields.String()
    rollback_note = fields.String()
    owner_role = fields.String(allow_none=True)
    est_minutes = fields.Float(allow_none=True)
    requires_approval = fields.Boolean(metadata={"description": "Needs an approval in this environment."})
    is_destructive = fields.Boolean()
    action = fields.Dict()
    status = fields.String(metadata={"description": "pending | running | waiting | done | skipped | failed | cancelled"})
    started_at = fields.DateTime(allow_none=True)
    completed_at = fields.DateTime(allow_none=True)
    actual_minutes = fields.Float(allow_none=True)
    note = fields.String(allow_none=True)
    actor = fields.String(allow_none=True)
    output = fields.Dict()
    attempts = fields.Integer()
    approved_by = fields.String(allow_none=True)
    approved_at = fields.DateTime(allow_none=True)
    overdue = fields.Boolean()


class RollbackNoteSchema(ma.Schema):
    order = fields.Integer()
    title = fields.String()
    rollback_note = fields.String()


class JobSummarySchema(ma.Schema):
    est_minutes = fields.Float(allow_none=True)
    actual_minutes = fields.Float(allow_none=True)
    eta = fields.DateTime(allow_none=True)
    rollback_notes = fields.List(fields.Nested(RollbackNoteSchema))
    children = fields.List(fields.String())


class JobSchema(ma.Schema):
    uuid = fields.String()
    status = fields.String(metadata={"description": "queued | running | paused | waiting | succeeded | failed | cancelled | stopped"})
    runbook = fields.Nested(RunbookRefSchema)
    environment = fields.String()
    parameters = fields.Dict()
    triggered_by = fields.String(metadata={"description": "api | webhook | schedule | runbook | person"})
    trigger_ref = fields.String(allow_none=True)
    actor = fields.String()
    parent_job_uuid = fields.String(allow_none=True)
    root_job_uuid = fields.String()
    depth = fields.Integer()
    change_ref = fields.String(allow_none=True)
    incident_ref = fields.String(allow_none=True)
    created_at = fields.DateTime()
    started_at = fields.DateTime(allow_none=True)
    ended_at = fields.DateTime(allow_none=True)
    deadline_at = fields.DateTime(allow_none=True)
    ended_by = fields.String(allow_none=True, metadata={"description": "person | system | parent"})
    ended_by_actor = fields.String(allow_none=True)
    stop_reason = fields.String(allow_none=True)
    message = fields.String(allow_none=True)
    stopped_step = fields.Integer(allow_none=True)
    current_step = fields.Integer(allow_none=True)
    waiting_for = fields.String(allow_none=True, metadata={"description": "operator | approval | child | timer | delivery"})
    pause_requested = fields.Boolean()
    steps = fields.List(fields.Nested(StepTimelineSchema))
    summary = fields.Nested(JobSummarySchema)


class JobEnvelopeSchema(ma.Schema):
    job = fields.Nested(JobSchema)


class JobListQuerySchema(PageQuerySchema):
    runbook = fields.String(load_default=None, metadata={"description": "Key or name."})
    status = fields.String(load_default=None, metadata={"description": "Comma-separated statuses."})
    parent = fields.String(load_default=None, metadata={"description": "Only children of this job."})
    triggered_by = fields.String(load_default=None, validate=validate.OneOf(TRIGGER_KINDS))

    @ma.validates("status")
    def _known_statuses(self, value: str | None, **_: object) -> None:
        unknown = [s.strip() for s in (value or "").split(",") if s.strip() and s.strip() not in {j.value for j in JobStatus}]
        if unknown:
            raise ma.ValidationError(f"unknown status {', '.join(map(repr, unknown))}; use {', '.join(j.value for j in JobStatus)}")


class JobPageSchema(PageSchema):
    items = fields.List(fields.Nested(JobSchema))


class StepNoteSchema(StrictSchema):
    note = fields.String(load_default=None, allow_none=True, validate=validate.Length(0, 5000))


class SkipSchema(StrictSchema):
    reason = fields.String(required=True, validate=validate.Length(1, 5000))

    @ma.validates("reason")
    def _not_blank(self, value: str, **_: object) -> None:
        if not value.strip():
            raise ma.ValidationError("give a reason for skipping the step")


class FailSchema(StrictSchema):
    note = fields.String(required=True, validate=validate.Length(1, 5000), metadata={"description": "What went wrong."})


class AbortSchema(StrictSchema):
    reason = fields.String(load_default=None, allow_none=True, validate=validate.Length(0, 1000))


class EventQuerySchema(StrictSchema):
    after = fields.Integer(load_default=0, validate=validate.Range(0))
    limit = fields.Integer(load_default=100, validate=validate.Range(1, 1000))


class EventSchema(ma.Schema):
    id = fields.Integer()
    seq = fields.Integer(allow_none=True)
    type = fields.String()
    created_at = fields.DateTime()
    data = fields.Dict()


class JobEventPageSchema(ma.Schema):
    items = fields.List(fields.Nested(EventSchema))
    next_after = fields.Integer()
