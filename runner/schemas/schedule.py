"""Cron schedules of runbooks."""
from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from .common import StrictSchema


class ScheduleCreateSchema(StrictSchema):
    cron = fields.String(required=True, validate=validate.Length(1, 120),
                         metadata={"description": "5 fields: minute hour day-of-month month day-of-week", "example": "30 2 * * 1-5"})
    timezone = fields.String(load_default="UTC", validate=validate.Length(1, 64), metadata={"example": "Europe/Berlin"})
    parameters = fields.Raw(load_default=dict, metadata={"description": "Parameter values for every fired job; checked now and at each fire."})
    enabled = fields.Boolean(load_default=True)
    description = fields.String(load_default="", validate=validate.Length(0, 200))


class SchedulePatchSchema(StrictSchema):
    cron = fields.String(validate=validate.Length(1, 120))
    timezone = fields.String(validate=validate.Length(1, 64))
    parameters = fields.Raw()
    enabled = fields.Boolean()
    description = fields.String(validate=validate.Length(0, 200))


class ScheduleSchema(ma.Schema):
    id = fields.String()
    runbook = fields.String()
    cron = fields.String()
    timezone = fields.String()
    description = fields.String()
    cron_description = fields.String(metadata={"description": "The expression in words, e.g. 'At 02:30 AM, Monday through Friday'."})
    parameters = fields.Dict()
    enabled = fields.Boolean()
    paused_reason = fields.String(allow_none=True, metadata={"description": "Why the system disabled it (e.g. the runbook was archived)."})
    next_fire_times = fields.List(fields.DateTime(), metadata={"description": "The next five fire times, in the schedule's time zone."})
    created_at = fields.DateTime()
    created_by = fields.String()
    last_fired_at = fields.DateTime(allow_none=True)
    last_job_uuid = fields.String(allow_none=True)


class ScheduleListSchema(ma.Schema):
    items = fields.List(fields.Nested(ScheduleSchema))
