"""The Execute form: one labelled field per parameter of a runbook's JSON Schema, and the values it posts.

Text is only decoded into the types the schema names; whether the values are acceptable is decided by
``params.validate_values`` when the job is created.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..jsonbody import MAX_INTEGER_DIGITS, loads

__all__ = ["ParamField", "fields_of", "values_from_form", "example_values", "DECIMAL"]
# A decimal number as people type it into a number field, in ASCII digits: "5", "-0.5", ".5", "5.", "1e3".
DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# A float past this may not be the integer it looks like (2**53: where doubles stop holding every integer).
_EXACT_INTEGERS = 2**53


@dataclass(frozen=True)
class ParamField:
    """One parameter as a form field."""

    name: str
    label: str
    kind: str  # text | number | integer | checkbox | select | json
    help: str
    required: bool
    default: Any
    choices: tuple[Any, ...] = ()

    @property
    def input_name(self) -> str:
        """The form field's name."""
        return f"param-{self.name}"

    def shown(self, submitted: Mapping[str, Any] | None) -> Any:
        """The value to show: what was posted, else the default."""
        if submitted is not None:
            if self.kind == "checkbox":
                return self.input_name in submitted
            return submitted.get(self.input_name, "")
        if self.kind == "checkbox":
            return bool(self.default)
        if self.kind == "select":
            return str(self.choices.index(self.default)) if self.default in self.choices else ""
        if self.kind == "json":
            return "" if self.default is None else json.dumps(self.default)
        return "" if self.default is None else str(self.default)

    def option_label(self, value: Any) -> str:
        """How a choice is shown: strings as they are, anything else as JSON."""
        return value if isinstance(value, str) else json.dumps(value)


def _kind(prop: Mapping[str, Any]) -> str:
    if "enum" in prop:
        return "select"
    kind = prop.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    return {"boolean": "checkbox", "number": "number", "integer": "integer", "object": "json", "array": "json"}.get(kind, "text")


def fields_of(schema: Mapping[str, Any] | None) -> list[ParamField]:
    """List the form fields of a parameters schema, in its property order."""
    schema = schema or {}
    required = set(schema.get("required") or [])
    result = []
    for name, prop in (schema.get("properties") or {}).items():
        prop = prop if isinstance(prop, Mapping) else {}
        result.append(ParamField(
            name=name, label=prop.get("title") or name, kind=_kind(prop), help=prop.get("description") or "",
            required=name in required, default=prop.get("default"), choices=tuple(prop.get("enum") or ()),
        ))
    return result


def _decode(field: ParamField, text: str) -> Any:
    if field.kind == "select":
        chosen = text.isascii() and text.isdigit() and len(text) <= len(str(len(field.choices))) and int(text) < len(field.choices)
        return field.choices[int(text)] if chosen else text
    if field.kind in ("number", "integer"):
        # Decimal numbers as people type them, in ASCII digits: not "nan", "inf", "1_000" or other scripts' digits, which
        # Python would read too. What is left as text, the schema check names.
        typed = text.strip()
        if not DECIMAL.fullmatch(typed):
            return text
        if typed.lstrip("+-").isdigit():  # an integer: exactly as typed
            return int(typed) if len(typed.lstrip("+-")) <= MAX_INTEGER_DIGITS else text
        number = float(typed)
        if not math.isfinite(number):  # "1e400"
            return text
        return int(number) if field.kind == "integer" and number.is_integer() and abs(number) <= _EXACT_INTEGERS else number
    if field.kind == "json":
        try:
            return loads(text)
        except ValueError:  # not JSON, or JSON the runner refuses (runner.jsonbody): the schema check says why
            return text
    return text


def values_from_form(fields: list[ParamField], form: Mapping[str, Any]) -> dict[str, Any]:
    """Decode the posted fields; a blank field is left out so that the schema's default (or 'required') applies."""
    values: dict[str, Any] = {}
    for field in fields:
        if field.kind == "checkbox":
            values[field.name] = field.input_name in form
            continue
        text = str(form.get(field.input_name, ""))
        if not text.strip():
            continue
        values[field.name] = text if field.kind == "text" else _decode(field, text.strip())
    return values


def example_values(schema: Mapping[str, Any] | None) -> dict[str, Any]:
    """Values to show in a copyable example call: defaults, else the first choice, else a placeholder of the right type."""
    placeholders = {"checkbox": False, "number": 0, "integer": 0, "json": {}}
    example = {}
    for field in fields_of(schema):
        if field.default is not None:
            example[field.name] = field.default
        elif field.choices:
            example[field.name] = field.choices[0]
        else:
            example[field.name] = placeholders.get(field.kind, f"<{field.name}>")
    return example
