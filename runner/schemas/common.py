"""Schemas shared by every resource."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

# Largest page a list route returns.
MAX_PAGE = 200
# Page size when the client names none.
DEFAULT_PAGE = 50


class StrictSchema(ma.Schema):
    """Refuse unknown fields (the marshmallow default, stated once)."""

    class Meta:
        unknown = ma.RAISE
        ordered = True


class Moment(fields.AwareDateTime):
    """A date and time with its UTC offset, that UTC can hold too: 9999-12-31T23:00:00-05:00 would be in the year 10000."""

    default_error_messages = {"utc": "{input} is outside what UTC can hold (0001-01-01 to 9999-12-31)"}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        moment = super()._deserialize(value, attr, data, **kwargs)
        try:
            moment.astimezone(timezone.utc)
        except OverflowError:
            raise self.make_error("utc", input=value) from None
        return moment


class FieldErrorSchema(ma.Schema):
    field = fields.String(metadata={"description": "Dotted path of the offending field."})
    message = fields.String()
    value = fields.Raw(allow_none=True, metadata={"description": "The value that was refused."})


class ProblemSchema(ma.Schema):
    """An RFC 9457 problem document."""

    type = fields.String(metadata={"description": "Stable identifier of the kind of problem."})
    title = fields.String()
    status = fields.Integer()
    detail = fields.String(metadata={"description": "What went wrong, in a sentence a person can act on."})
    errors = fields.List(fields.Nested(FieldErrorSchema))


class PageQuerySchema(StrictSchema):
    limit = fields.Integer(load_default=DEFAULT_PAGE, validate=validate.Range(1, MAX_PAGE))
    cursor = fields.String(load_default=None, metadata={"description": "next_cursor of the previous page."})


class PageSchema(ma.Schema):
    next_cursor = fields.String(allow_none=True, metadata={"description": "Pass as cursor to get the next page; null on the last page."})
