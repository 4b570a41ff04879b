"""Workspace, environment, token and audit schemas."""
from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from ..auth import Role
from .common import Moment, PageQuerySchema, PageSchema, StrictSchema


class EnvironmentSchema(ma.Schema):
    id = fields.String(metadata={"example": "eu-qa"})
    label = fields.String(metadata={"example": "EU QA"})
    known = fields.List(fields.Dict(), metadata={"description": "Every environment this deployment knows."})
    require_header = fields.Boolean()


class WorkspaceSchema(ma.Schema):
    slug = fields.String()
    name = fields.String()
    environment = fields.String()
    subject = fields.String(metadata={"description": "Who the calling token belongs to."})
    role = fields.String(metadata={"description": "The calling token's role."})


class TokenCreateSchema(StrictSchema):
    role = fields.String(required=True, validate=validate.OneOf([r.value for r in Role]))
    subject = fields.String(validate=validate.Length(1, 120), metadata={"description": "Who the token acts as; runbook ownership is matched against it."})
    expires_at = Moment(load_default=None, allow_none=True)


class TokenSchema(ma.Schema):
    id = fields.Integer()
    subject = fields.String()
    role = fields.String()
    prefix = fields.String()
    created_at = fields.DateTime()
    expires_at = fields.DateTime(allow_none=True)
    revoked_at = fields.DateTime(allow_none=True)
    token = fields.String(metadata={"description": "The secret, present only in the answer that created it."})


class TokenListSchema(ma.Schema):
    items = fields.List(fields.Nested(TokenSchema))


class AuditQuerySchema(PageQuerySchema):
    target = fields.String(load_default=None, metadata={"description": "Only entries about this target, e.g. RB-00001."})


class AuditEntrySchema(ma.Schema):
    id = fields.Integer()
    at = fields.DateTime()
    actor = fields.String()
    role = fields.String(allow_none=True)
    action = fields.String()
    target = fields.String()
    source = fields.String(allow_none=True)
    detail = fields.Dict()


class AuditPageSchema(PageSchema):
    items = fields.List(fields.Nested(AuditEntrySchema))
