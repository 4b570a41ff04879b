"""Runbook parameters: the JSON Schema a runbook declares, placeholders in steps, and values.

Every check collects all of its errors before raising, so one answer tells
the author everything that is wrong.
"""
from __future__ import annotations

import copy
import json
import re
import threading
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker, validators
from jsonschema.exceptions import ValidationError
from referencing.exceptions import Unresolvable

from ..errors import FieldError, InvalidInput

__all__ = [
    "PLACEHOLDER",
    "check_schema",
    "declared_names",
    "step_placeholders",
    "check_placeholders",
    "validate_values",
    "render",
    "render_value",
]

PLACEHOLDER = re.compile(r"\{\{\s*params\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
# Step fields whose text may hold placeholders.
TEXT_FIELDS = ("title", "description", "verification", "rollback_note")


class SchemaLoop(Exception):
    """A reference that leads back to where it was applied, to the same value: checking it would never end."""


_applying = threading.local()


def _guarded(keyword: Callable[..., Iterator[ValidationError]]) -> Callable[..., Iterator[ValidationError]]:
    """``keyword`` ($ref or $dynamicRef) refusing to apply a reference again to the value it is still being applied to.

    Such a loop never moves into the value, so it would recurse until Python's limit, and that limit may be hit inside
    the reference registry's Rust code, which then panics (an exception no handler catches; the worker dies) instead
    of raising RecursionError. A reference applied anew to a part of the value (a tree of values) is not a loop.
    """
    def apply(validator: Any, ref: str, instance: Any, schema: dict[str, Any]) -> Iterator[ValidationError]:
        active = _applying.__dict__.setdefault("active", set())
        key = (id(schema), id(instance))
        if key in active:
            raise SchemaLoop(f"{ref} leads back to itself without moving into the value")
        active.add(key)
        try:
            yield from keyword(validator, ref, instance, schema)
        finally:
            active.discard(key)

    return apply


# Draft 2020-12 with both kinds of reference guarded: every schema here is checked with it.
_Validator = validators.extend(Draft202012Validator,
                               {name: _guarded(Draft202012Validator.VALIDATORS[name]) for name in ("$ref", "$dynamicRef")})


# The one format of the meta-schema checked: a `pattern` that does not compile would fail every later validation. Python's
# own "regex" check lets through a repetition too large to compile (``a{99999999999}``), which raises OverflowError.
_PATTERNS = FormatChecker(formats=())


@_PATTERNS.checks("regex", raises=(re.error, OverflowError, RecursionError))
def _compiles(instance: object) -> bool:
    if isinstance(instance, str):
        re.compile(instance)
    return True


# Every format, for values: a value of format "regex" is checked the same way.
_VALUE_FORMATS = FormatChecker()
_VALUE_FORMATS.checks("regex", raises=(re.error, OverflowError, RecursionError))(_compiles)


def check_schema(schema: dict[str, Any], *, field: str = "parameters") -> list[FieldError]:
    """List what is wrong with a parameters schema (draft 2020-12, an object schema)."""
    errors: list[FieldError] = []
    if not schema:
        return errors
    meta = Draft202012Validator(Draft202012Validator.META_SCHEMA, format_checker=_PATTERNS)
    for error in sorted(meta.iter_errors(schema), key=lambda e: list(e.absolute_path)):
        path = ".".join(str(p) for p in error.absolute_path)
        errors.append({"field": f"{field}.{path}" if path else field, "message": error.message, "value": error.instance})
    if not errors and schema.get("type", "object") != "object":
        errors.append({"field": f"{field}.type", "message": "parameters must be an object schema", "value": schema.get("type")})
    if not errors:
        # Check a value with every parameter given (as null) and see that no reference loops: {"$ref": "#"} beside the
        # properties, or a parameter whose schema is a reference to itself. A loop deeper in would be refused at invocation.
        try:
            probe = {name: None for name in schema.get("properties", {})}
            for _ in _Validator(schema, format_checker=_VALUE_FORMATS).iter_errors(probe):
                pass
        except (SchemaLoop, RecursionError) as exc:
            reason = str(exc) if isinstance(exc, SchemaLoop) else "it leads back to itself"
            errors.append({"field": field, "message": f"the schema refers to itself without end: {reason}", "value": None})
        except Unresolvable as exc:
            errors.append({"field": field, "message": f"a reference resolves to nothing: {exc}", "value": None})
        except (AttributeError, TypeError):
            # jsonschema applies whatever a reference points at as a schema: "#/properties/a/type" is a string.
            errors.append({"field": field, "message": "a reference points at something that is not a schema", "value": None})
    if not errors:
        for name in schema.get("properties", {}):
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                errors.append(
                    {"field": f"{field}.properties", "message": "parameter names must be identifiers usable as {{ params.name }}", "value": name}
                )
    return errors


def declared_names(schema: dict[str, Any]) -> set[str]:
    """Names of the parameters a schema declares."""
    return set((schema or {}).get("properties", {}))


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def step_placeholders(step: dict[str, Any]) -> set[str]:
    """Every parameter name a step's text and action refer to."""
    names: set[str] = set()
    texts = [step.get(f) or "" for f in TEXT_FIELDS]
    action = step.get("action") or {}
    texts.extend(_strings({k: v for k, v in action.items() if k != "type"}))
    for text in texts:
        names.update(PLACEHOLDER.findall(text))
    return names


def check_placeholders(steps: list[dict[str, Any]], schema: dict[str, Any]) -> list[FieldError]:
    """List placeholders that name an undeclared parameter, with the step order."""
    declared = declared_names(schema)
    errors = []
    for step in steps:
        for name in sorted(step_placeholders(step) - declared):
            errors.append(
                {
                    "field": f"steps.{step['order'] - 1}",
                    "message": f"step {step['order']} refers to {{{{ params.{name} }}}}, but the runbook declares no parameter {name!r}",
                    "value": name,
                }
            )
    return errors


@lru_cache(maxsize=512)
def _validator(schema_json: str) -> Draft202012Validator:
    return _Validator(json.loads(schema_json), format_checker=_VALUE_FORMATS)


def _apply_defaults(schema: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(values)
    for name, prop in (schema.get("properties") or {}).items():
        if not isinstance(prop, dict):
            continue
        if name not in result and "default" in prop:
            result[name] = copy.deepcopy(prop["default"])
        if isinstance(result.get(name), dict) and prop.get("type") == "object":
            result[name] = _apply_defaults(prop, result[name])
    return result


def _describe(error: ValidationError) -> FieldError:
    path = list(error.absolute_path)
    if error.validator == "required":
        missing = re.findall(r"'([^']+)' is a required property", error.message)
        path = path + missing[:1]
    value = None if error.validator == "required" else error.instance
    if error.validator == "additionalProperties":
        extra = [name for name in re.findall(r"'([^']+)'", error.message) if isinstance(error.instance, dict) and name in error.instance]
        path = path + extra[:1]
        value = error.instance[extra[0]] if extra else value
    field = ".".join(["parameters", *map(str, path)])
    return {"field": field, "message": error.message, "value": value}


def validate_values(schema: dict[str, Any], values: Any, *, field: str = "parameters") -> dict[str, Any]:
    """Return the values with defaults applied, or raise InvalidInput listing every error."""
    if not isinstance(values, dict):
        raise InvalidInput(
            f"{field} must be a JSON object, got {type(values).__name__}",
            errors=[{"field": field, "message": "not an object", "value": values}],
        )
    if not schema:
        if values:
            names = ", ".join(sorted(values))
            raise InvalidInput(
                f"this runbook declares no parameters, got {names}",
                errors=[{"field": f"{field}.{n}", "message": "undeclared parameter", "value": values[n]} for n in sorted(values)],
            )
        return {}
    completed = _apply_defaults(schema, values)
    validator = _validator(json.dumps(schema, sort_keys=True))
    try:
        errors = [_describe(e) for e in sorted(validator.iter_errors(completed), key=lambda e: list(map(str, e.absolute_path)))]
    except (Unresolvable, re.error, SchemaLoop, RecursionError, AttributeError, TypeError) as exc:
        # A reference that resolves nowhere or to something that is not a schema (saved before check_schema refused both),
        # a pattern that does not compile, or a reference that leads back to itself forever (``{"$ref": "#"}``).
        not_a_schema = "a reference points at something that is not a schema"
        reason = {RecursionError: "it refers to itself without end", AttributeError: not_a_schema, TypeError: not_a_schema}.get(type(exc), str(exc))
        raise InvalidInput(
            f"the runbook's parameters schema cannot check values ({reason}); fix the runbook's parameters",
            errors=[{"field": field, "message": "the runbook's parameters schema is unusable", "value": None}],
        ) from None
    except OverflowError as exc:
        # An integer past a double's range, which ``multipleOf`` cannot divide by a fraction: bodies can no longer hold one
        # (runner.jsonbody), but a schedule's parameters saved before that are checked again at every fire.
        raise InvalidInput(
            f"a parameter is too large for the runbook's number checks ({exc})",
            errors=[{"field": field, "message": "a number too large to check", "value": None}],
        ) from None
    if errors:
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        raise InvalidInput(f"parameters do not match the runbook's schema: {summary}", errors=errors)
    return completed


def render(text: str, params: dict[str, Any]) -> str:
    """Substitute ``{{ params.name }}`` in text with the parameter's value."""

    def value(match: re.Match[str]) -> str:
        found = params.get(match.group(1), "")
        return found if isinstance(found, str) else json.dumps(found)

    return PLACEHOLDER.sub(value, text) if "{{" in text else text


def render_value(value: Any, params: dict[str, Any]) -> Any:
    """Substitute placeholders inside a JSON value; a string that is one placeholder keeps the value's type."""
    if isinstance(value, str):
        whole = PLACEHOLDER.fullmatch(value.strip())
        if whole and whole.group(1) in params:
            return copy.deepcopy(params[whole.group(1)])
        return render(value, params)
    if isinstance(value, dict):
        return {render(k, params): render_value(v, params) for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(v, params) for v in value]
    return value
