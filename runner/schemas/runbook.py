"""Runbook bodies, steps and their actions, versions and diffs."""
from __future__ import annotations

import re
from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from ..auth import Role
from .common import PageQuerySchema, PageSchema, StrictSchema

NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{0,118}[a-z0-9])?$")
ACTION_TYPES = ("manual", "http", "runbook", "wait")
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")
# Longest pause a wait step may ask for (one day).
MAX_WAIT_SECONDS = 86_400
# Longest run budget a runbook may declare (seven days).
MAX_DURATION_SECONDS = 7 * 86_400

_ACTION_FIELDS = {
    "manual": set(),
    "http": {"method", "url", "headers", "body", "timeout_seconds", "retries", "backoff_seconds", "backoff_factor", "backoff_max_seconds", "expected_status"},
    "runbook": {"runbook", "parameters", "wait"},
    "wait": {"seconds"},
}
_ACTION_DEFAULTS: dict[str, dict[str, Any]] = {
    "http": {"method": "GET", "headers": {}, "retries": 0, "backoff_seconds": 1.0, "backoff_factor": 2.0, "backoff_max_seconds": 60.0, "expected_status": []},
    "runbook": {"parameters": {}, "wait": True},
}
_ACTION_REQUIRED = {"http": ("url",), "runbook": ("runbook",), "wait": ("seconds",)}


def _not_blank(value: str) -> bool:
    if not value.strip():
        raise ma.ValidationError("must not be blank")
    return True


class ActionSchema(StrictSchema):
    """What a step does: wait for an operator, call a URL, call a runbook, or pause."""

    type = fields.String(load_default="manual", validate=validate.OneOf(ACTION_TYPES))
    method = fields.String(validate=validate.OneOf(HTTP_METHODS), metadata={"description": "http: request method."})
    url = fields.String(validate=validate.Length(1, 2048), metadata={"description": "http: URL, may hold {{ params.x }}."})
    headers = fields.Dict(keys=fields.String(), values=fields.String(), metadata={"description": "http: request headers."})
    body = fields.Raw(allow_none=True, metadata={"description": "http: JSON body, placeholders substituted."})
    timeout_seconds = fields.Float(validate=validate.Range(0.1, 300), metadata={"description": "http: timeout of one attempt."})
    retries = fields.Integer(validate=validate.Range(0, 10), metadata={"description": "http: further attempts after a failure."})
    backoff_seconds = fields.Float(validate=validate.Range(0, 3600), metadata={"description": "http: delay before the first retry."})
    backoff_factor = fields.Float(validate=validate.Range(1, 10), metadata={"description": "http: multiplier of the delay per retry."})
    backoff_max_seconds = fields.Float(validate=validate.Range(0, 86_400), metadata={"description": "http: longest delay between retries."})
    expected_status = fields.List(
        fields.Integer(validate=validate.Range(100, 599)),
        metadata={"description": "http: statuses that count as success; empty means any 2xx."},
    )
    runbook = fields.String(validate=validate.Length(1, 120), metadata={"description": "runbook: key or name of a callable runbook."})
    parameters = fields.Dict(metadata={"description": "runbook: parameters passed to the child, may hold {{ params.x }}."})
    wait = fields.Boolean(metadata={"description": "runbook: wait for the child job to finish."})
    seconds = fields.Integer(validate=validate.Range(1, MAX_WAIT_SECONDS), metadata={"description": "wait: how long to pause."})

    @ma.validates_schema
    def _fits_type(self, data: dict[str, Any], **_: Any) -> None:
        kind = data.get("type", "manual")
        errors: dict[str, list[str]] = {}
        for name in sorted(set(data) - {"type"} - _ACTION_FIELDS[kind]):
            errors[name] = [f"not a field of a {kind!r} action"]
        for name in _ACTION_REQUIRED.get(kind, ()):
            if name not in data:
                errors[name] = [f"required for a {kind!r} action"]
        if errors:
            raise ma.ValidationError(errors)

    @ma.post_load
    def _fill_defaults(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        kind = data.setdefault("type", "manual")
        return {**_ACTION_DEFAULTS.get(kind, {}), **data}


class StepSchema(StrictSchema):
    """One instruction of a runbook."""

    order = fields.Integer(validate=validate.Range(1), metadata={"description": "1-based position; taken from the list when omitted."})
    title = fields.String(required=True, validate=[validate.Length(1, 200), _not_blank])
    description = fields.String(load_default="", validate=validate.Length(0, 20_000), metadata={"description": "Markdown; may hold {{ params.x }}."})
    owner_role = fields.String(load_default=None, allow_none=True, validate=validate.OneOf([r.value for r in Role]))
    est_minutes = fields.Float(load_default=None, allow_none=True, validate=validate.Range(0, 10_000))
    verification = fields.String(load_default="", validate=validate.Length(0, 5_000))
    rollback_note = fields.String(load_default="", validate=validate.Length(0, 5_000))
    requires_approval = fields.Boolean(load_default=False)
    is_destructive = fields.Boolean(load_default=False)
    idempotent = fields.Boolean(load_default=False, metadata={"description": "Safe to repeat if the runner crashed mid-step."})
    timeout_seconds = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(1, MAX_DURATION_SECONDS))
    action = fields.Nested(ActionSchema, load_default=lambda: {"type": "manual"})


def _check_orders(steps: list[dict[str, Any]]) -> None:
    errors = {}
    for position, step in enumerate(steps, start=1):
        given = step.get("order")
        if given is not None and given != position:
            errors[position - 1] = {"order": [f"step at position {position} says order {given}; list steps in the order they run"]}
        step["order"] = position
    if errors:
        raise ma.ValidationError({"steps": errors})


class RunbookBodySchema(StrictSchema):
    """Everything an author writes; each save stores it whole as a new version."""

    name = fields.String(validate=validate.Regexp(NAME_RE, error="lowercase letters, digits, '-' and '_' (2-120), got {input!r}"),
                         metadata={"description": "Stable name, unique in the workspace; derived from the title when omitted."})
    title = fields.String(required=True, validate=[validate.Length(1, 200), _not_blank])
    description = fields.String(load_default="", validate=validate.Length(0, 50_000))
    category = fields.String(load_default="", validate=validate.Length(0, 80))
    owner = fields.String(validate=validate.Length(1, 120), metadata={"description": "Subject of the runbook owner; the creator when omitted."})
    parameters = fields.Dict(load_default=dict, metadata={"description": "JSON Schema (draft 2020-12) of the parameters, an object schema."})
    callable = fields.Boolean(load_default=False, metadata={"description": "The Runbook Action trigger is configured: flows, runbooks and webhooks may invoke it."})
    allowed_callers = fields.List(fields.String(), load_default=None, allow_none=True,
                                  metadata={"description": "Keys or names of the runbooks allowed to call this one; null allows all."})
    max_duration_seconds = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(1, MAX_DURATION_SECONDS))
    environments = fields.List(fields.String(), load_default=None, allow_none=True,
                               metadata={"description": "Environment ids this runbook may run in; null means all."})
    steps = fields.List(fields.Nested(StepSchema), load_default=list)

    @ma.post_load
    def _number_steps(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        if "steps" in data:
            _check_orders(data["steps"])
        return data


class RunbookPatchSchema(RunbookBodySchema):
    """Fields to change; `steps` replaces the whole list. Every saved edit bumps the version."""

    base_version = fields.Integer(load_default=None, allow_none=True,
                                  metadata={"description": "Refuse the edit with 409 unless this is still the current version."})


class LintWarningSchema(ma.Schema):
    code = fields.String()
    step = fields.Integer(allow_none=True)
    message = fields.String()


class RunbookSchema(RunbookBodySchema):
    key = fields.String(dump_only=True, metadata={"description": "RB-00001, unique in the workspace, never reused."})
    status = fields.String(dump_only=True, metadata={"description": "draft | published | archived"})
    version = fields.Integer(dump_only=True)
    step_count = fields.Integer(dump_only=True)
    est_minutes = fields.Float(dump_only=True, allow_none=True)
    created_at = fields.DateTime(dump_only=True)
    updated_at = fields.DateTime(dump_only=True)
    published_at = fields.DateTime(dump_only=True, allow_none=True)
    archived_at = fields.DateTime(dump_only=True, allow_none=True)
    last_job_at = fields.DateTime(dump_only=True, allow_none=True)
    last_job_status = fields.String(dump_only=True, allow_none=True)
    lint = fields.List(fields.Nested(LintWarningSchema), dump_only=True)


class RunbookListQuerySchema(PageQuerySchema):
    status = fields.String(load_default=None, metadata={"description": "Comma-separated statuses: draft, published, archived."})
    category = fields.String(load_default=None)
    q = fields.String(load_default=None, metadata={"description": "Text found in the key, name, title or description."})
    callable = fields.Boolean(load_default=None, allow_none=True)
    include_archived = fields.Boolean(load_default=False)


class RunbookPageSchema(PageSchema):
    items = fields.List(fields.Nested(RunbookSchema))


class VersionSummarySchema(ma.Schema):
    version = fields.Integer()
    title = fields.String()
    step_count = fields.Integer()
    created_at = fields.DateTime()
    created_by = fields.String()
    source = fields.String(allow_none=True)


class VersionPageSchema(ma.Schema):
    items = fields.List(fields.Nested(VersionSummarySchema))


class VersionSchema(VersionSummarySchema):
    body = fields.Nested(RunbookBodySchema)


class DiffQuerySchema(StrictSchema):
    from_ = fields.Integer(data_key="from", required=True, validate=validate.Range(1))
    to = fields.Integer(required=True, validate=validate.Range(1))


class DiffEntrySchema(ma.Schema):
    change = fields.String(metadata={"description": "added | removed | changed | unchanged"})
    from_order = fields.Integer(allow_none=True)
    to_order = fields.Integer(allow_none=True)
    title = fields.String()
    fields_ = fields.Dict(data_key="fields", attribute="fields", metadata={"description": "Per changed field: from, to and, for text, lines marked '- ', '+ ' or '  '."})
    step = fields.Dict()


class DiffSchema(ma.Schema):
    key = fields.String()
    from_ = fields.Integer(data_key="from", attribute="from")
    to = fields.Integer()
    summary = fields.Dict(keys=fields.String(), values=fields.Integer())
    runbook = fields.Dict()
    steps = fields.List(fields.Nested(DiffEntrySchema))


class ExternalStepSchema(StrictSchema):
    title = fields.String(load_default="")
    description = fields.String(load_default="")
    est_minutes = fields.Float(load_default=None, allow_none=True, validate=validate.Range(0, 10_000))
    owner_role = fields.String(load_default=None, allow_none=True, validate=validate.OneOf([r.value for r in Role]))
    verification = fields.String(load_default="")
    rollback_note = fields.String(load_default="")
    requires_approval = fields.Boolean(load_default=False)
    is_destructive = fields.Boolean(load_default=False)


class ExternalStepsSchema(StrictSchema):
    """A step list from outside (e.g. a completed change's implementation plan) saved as a new version."""

    source = fields.String(required=True, validate=[validate.Length(1, 200), _not_blank],
                           metadata={"description": "Where the steps come from, e.g. CHG-1042; recorded in the audit log."})
    steps = fields.List(fields.Nested(ExternalStepSchema), required=True)
    base_version = fields.Integer(load_default=None, allow_none=True)


class ImportSchema(StrictSchema):
    """Either `text` (numbered plain text or markdown) or `bundle` (a runbook exported by a runner)."""

    text = fields.String(validate=validate.Length(1, 200_000))
    bundle = fields.Dict()
    name = fields.String(validate=validate.Regexp(NAME_RE))
    title = fields.String(validate=validate.Length(1, 200))
    category = fields.String(validate=validate.Length(0, 80))

    @ma.validates_schema
    def _one_source(self, data: dict[str, Any], **_: Any) -> None:
        if ("text" in data) == ("bundle" in data):
            raise ma.ValidationError("give exactly one of 'text' or 'bundle'", field_name="text")


class BundleSchema(ma.Schema):
    format = fields.String()
    format_version = fields.Integer()
    exported_at = fields.DateTime()
    exported_from = fields.Dict()
    runbook = fields.Nested(RunbookBodySchema)
