"""Subscriptions, deliveries, the event feed and inbound webhook URLs."""
from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from .common import Moment, PageQuerySchema, PageSchema, StrictSchema
from .job import EventSchema


class SubscribeSchema(StrictSchema):
    events = fields.List(fields.String(), required=True, metadata={"description": "Event types, e.g. job.stopped_by_system; '*' for all."})
    runbooks = fields.List(fields.String(), load_default=None, allow_none=True,
                           metadata={"description": "Keys or names of the runbooks to monitor; omit for all."})
    target_url = fields.String(required=True, validate=validate.Length(1, 2048))
    expires_at = Moment(load_default=None, allow_none=True,
                                      metadata={"description": "The subscription ends at this time unless renewed (PATCH)."})


class SubscriptionPatchSchema(StrictSchema):
    expires_at = Moment(allow_none=True)
    status = fields.String(validate=validate.OneOf(["active"]), metadata={"description": "'active' re-enables a disabled subscription."})


class SubscriptionSchema(ma.Schema):
    id = fields.String()
    events = fields.List(fields.String())
    runbooks = fields.List(fields.String(), allow_none=True)
    target_url = fields.String()
    status = fields.String(metadata={"description": "active | disabled"})
    expires_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime()
    created_by = fields.String()
    failure_streak = fields.Integer()
    disabled_at = fields.DateTime(allow_none=True)
    disabled_reason = fields.String(allow_none=True)
    secret = fields.String(metadata={"description": "whsec_… signing secret; only in the answer that created the subscription."})


class SubscriptionListSchema(ma.Schema):
    items = fields.List(fields.Nested(SubscriptionSchema))


class AttemptSchema(ma.Schema):
    at = fields.DateTime()
    status = fields.Integer(allow_none=True)
    latency_ms = fields.Float()
    outcome = fields.String(metadata={"description": "success | retry | give_up | gone"})
    error = fields.String(allow_none=True)
    response_excerpt = fields.String(allow_none=True)


class DeliverySchema(ma.Schema):
    id = fields.String(metadata={"description": "The webhook-id, the same on every attempt."})
    event_id = fields.Integer()
    event_type = fields.String()
    status = fields.String(metadata={"description": "pending | succeeded | failed | gone | cancelled"})
    attempts = fields.Integer()
    next_attempt_at = fields.DateTime(allow_none=True)
    last_status = fields.Integer(allow_none=True)
    last_error = fields.String(allow_none=True)
    created_at = fields.DateTime()
    completed_at = fields.DateTime(allow_none=True)
    attempt_log = fields.List(fields.Nested(AttemptSchema))


class DeliveryQuerySchema(PageQuerySchema):
    status = fields.String(load_default=None, validate=validate.OneOf(["pending", "succeeded", "failed", "gone", "cancelled"]))


class DeliveryPageSchema(PageSchema):
    items = fields.List(fields.Nested(DeliverySchema))


class FeedQuerySchema(StrictSchema):
    type = fields.String(load_default=None, metadata={"description": "Comma-separated event types."})
    runbooks = fields.String(load_default=None, metadata={"description": "Comma-separated runbook keys or names."})
    after = fields.String(load_default=None, metadata={"description": "next_cursor of the previous poll; omit to start at the oldest event."})
    limit = fields.Integer(load_default=100, validate=validate.Range(1, 1000))


class FeedSchema(ma.Schema):
    items = fields.List(fields.Nested(EventSchema))
    next_cursor = fields.String(metadata={"description": "Pass as `after` next time; returned even when there were no new events."})


class WebhookUrlCreateSchema(StrictSchema):
    expires_at = Moment(load_default=None, allow_none=True)
    require_signature = fields.Boolean(load_default=False,
                                       metadata={"description": "Require Standard Webhooks signatures (webhook-id, -timestamp, -signature)."})


class WebhookUrlSchema(ma.Schema):
    id = fields.String()
    runbook = fields.String()
    url = fields.String(metadata={"description": "The secret URL; only in the answer that created it."})
    secret = fields.String(metadata={"description": "Signing secret when require_signature; only in the creating answer."})
    prefix = fields.String()
    status = fields.String(metadata={"description": "active | revoked | expired"})
    require_signature = fields.Boolean()
    created_at = fields.DateTime()
    created_by = fields.String()
    expires_at = fields.DateTime(allow_none=True)
    revoked_at = fields.DateTime(allow_none=True)
    last_used_at = fields.DateTime(allow_none=True)


class WebhookUrlListSchema(ma.Schema):
    items = fields.List(fields.Nested(WebhookUrlSchema))
