"""The Steps editor's form: a runbook body shown as form values, and form values turned back into a body.

Only decoding lives here (text to numbers, JSON and lists); whether the result is a valid runbook is
decided by ``RunbookPatchSchema`` and ``runbooks.patch``, exactly as for the API.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import FieldError
from ..jsonbody import loads
from .paramform import DECIMAL

__all__ = ["from_body", "from_form", "to_raw", "apply_op", "blank_step", "field_names", "FieldErrors", "STEP_FLAGS", "NUMBER_FIELDS"]

STEP_TEXT = ("title", "description", "owner_role", "verification", "rollback_note")
STEP_NUMBERS = ("est_minutes", "timeout_seconds")
STEP_FLAGS = ("requires_approval", "is_destructive", "idempotent")
# Numeric action fields, per action type; blank means "the default".
NUMBER_FIELDS = {
    "http": ("timeout_seconds", "retries", "backoff_seconds", "backoff_factor", "backoff_max_seconds"),
    "wait": ("seconds",),
}
ACTION_TEXT = {"http": ("method", "url"), "runbook": ("runbook",)}
_STEP_KEY = re.compile(r"^steps-(\d+)-")
_OP = re.compile(r"^(up|down|delete)-(\d+)$")


def _number(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _json_text(value: Any) -> str:
    return "" if value in (None, {}) else json.dumps(value, indent=2)


def blank_step() -> dict[str, Any]:
    """Form values of a new, empty manual step."""
    return {**{f: "" for f in STEP_TEXT + STEP_NUMBERS}, **{f: False for f in STEP_FLAGS}, "action": _blank_action()}


def _blank_action() -> dict[str, Any]:
    return {"type": "manual", "method": "GET", "url": "", "headers": "", "body": "", "expected_status": "", "runbook": "",
            "parameters": "", "wait": True, **{f: "" for fields in NUMBER_FIELDS.values() for f in fields}}


def _action_values(action: Mapping[str, Any]) -> dict[str, Any]:
    values = _blank_action()
    kind = action.get("type", "manual")
    values["type"] = kind
    for name in ACTION_TEXT.get(kind, ()):
        values[name] = action.get(name) or values[name]
    for name in NUMBER_FIELDS.get(kind, ()):
        values[name] = _number(action.get(name))
    if kind == "http":
        values["headers"] = "\n".join(f"{k}: {v}" for k, v in (action.get("headers") or {}).items())
        values["body"] = "" if action.get("body") is None else json.dumps(action["body"], indent=2)
        values["expected_status"] = ", ".join(str(s) for s in action.get("expected_status") or [])
    if kind == "runbook":
        values["parameters"] = _json_text(action.get("parameters"))
        values["wait"] = bool(action.get("wait", True))
    return values


def from_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """Turn a saved runbook body into the editor's form values."""
    steps = []
    for step in body.get("steps") or []:
        values = {f: step.get(f) or "" for f in STEP_TEXT}
        values.update({f: _number(step.get(f)) for f in STEP_NUMBERS})
        values.update({f: bool(step.get(f)) for f in STEP_FLAGS})
        values["action"] = _action_values(step.get("action") or {})
        steps.append(values)
    return {
        "title": body.get("title") or "",
        "description": body.get("description") or "",
        "category": body.get("category") or "",
        "callable": bool(body.get("callable")),
        "max_duration_seconds": _number(body.get("max_duration_seconds")),
        "environments": list(body.get("environments") or []),
        "allowed_callers": ", ".join(body.get("allowed_callers") or []),
        "parameters": _json_text(body.get("parameters")),
        "steps": steps,
        "base_version": str(body.get("version") or ""),
    }


def from_form(form: Any) -> dict[str, Any]:
    """Read the editor's form values back, steps in the order of their field numbers."""
    indices = sorted({int(m.group(1)) for key in form for m in [_STEP_KEY.match(key)] if m})
    steps = []
    for i in indices:
        prefix = f"steps-{i}-"
        values = {f: form.get(prefix + f, "") for f in STEP_TEXT + STEP_NUMBERS}
        values.update({f: prefix + f in form for f in STEP_FLAGS})
        action = {name: form.get(f"{prefix}action-{name}", default) for name, default in _blank_action().items() if name != "wait"}
        action["wait"] = f"{prefix}action-wait" in form
        values["action"] = action
        steps.append(values)
    return {
        "title": form.get("title", ""),
        "description": form.get("description", ""),
        "category": form.get("category", ""),
        "callable": "callable" in form,
        "max_duration_seconds": form.get("max_duration_seconds", ""),
        "environments": form.getlist("environments"),
        "allowed_callers": form.get("allowed_callers", ""),
        "parameters": form.get("parameters", ""),
        "steps": steps,
        "base_version": form.get("base_version", ""),
        "_indices": indices,
    }


def apply_op(state: dict[str, Any], op: str) -> bool:
    """Apply an editor button that changes the step list without saving (add, up, down, delete); say whether it was one."""
    steps = state["steps"]
    if op == "add":
        steps.append(blank_step())
        return True
    match = _OP.match(op)
    if not match:
        return False
    indices = state.get("_indices") or list(range(len(steps)))
    number = int(match.group(2))
    if number not in indices:
        return True
    position = indices.index(number)
    if match.group(1) == "delete":
        del steps[position]
    else:
        other = position - 1 if match.group(1) == "up" else position + 1
        if 0 <= other < len(steps):
            steps[position], steps[other] = steps[other], steps[position]
    return True


def _json(text: str, field: str, errors: list[FieldError]) -> Any:
    try:
        return loads(text)
    except ValueError as exc:  # not JSON, or JSON the runner refuses (runner.jsonbody)
        errors.append({"field": field, "message": f"not valid JSON: {exc}", "value": text})
    return None


def _optional(text: str) -> str | None:
    return text.strip() or None


def _number_text(text: str, field: str, errors: list[FieldError]) -> str | None:
    """A number field's text, or None when blank; one that is no decimal number in ASCII digits ("1_000", "١", "nan") is an error."""
    value = _optional(text)
    if value is not None and not DECIMAL.fullmatch(value):
        errors.append({"field": field, "message": f"not a number: {value!r}", "value": value})
    return value


def _headers(text: str, field: str, errors: list[FieldError]) -> dict[str, str]:
    headers = {}
    for line in filter(None, (raw.strip() for raw in text.splitlines())):
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            errors.append({"field": field, "message": f"write one header per line as 'Name: value', got {line!r}", "value": line})
            continue
        headers[name.strip()] = value.strip()
    return headers


def _raw_action(values: Mapping[str, Any], field: str, errors: list[FieldError]) -> dict[str, Any]:
    kind = values.get("type") or "manual"
    action: dict[str, Any] = {"type": kind}
    for name in ACTION_TEXT.get(kind, ()):
        if values.get(name, "").strip():
            action[name] = values[name].strip()
    for name in NUMBER_FIELDS.get(kind, ()):
        if values.get(name, "").strip():
            action[name] = _number_text(values[name], f"{field}.{name}", errors)
    if kind == "http":
        action["headers"] = _headers(values.get("headers", ""), f"{field}.headers", errors)
        if values.get("body", "").strip():
            action["body"] = _json(values["body"], f"{field}.body", errors)
        action["expected_status"] = [_number_text(s, f"{field}.expected_status", errors)
                                     for s in re.split(r"[\s,]+", values.get("expected_status", "")) if s]
    if kind == "runbook":
        action["wait"] = bool(values.get("wait"))
        if values.get("parameters", "").strip():
            action["parameters"] = _json(values["parameters"], f"{field}.parameters", errors)
    return action


def to_raw(state: Mapping[str, Any]) -> tuple[dict[str, Any], list[FieldError]]:
    """Decode form values into a runbook body for the schema, plus the errors of text that could not be decoded."""
    errors: list[FieldError] = []
    steps = []
    for position, values in enumerate(state["steps"]):
        step: dict[str, Any] = {f: values[f] for f in ("title", "description", "verification", "rollback_note")}
        step["owner_role"] = _optional(values["owner_role"])
        step.update({f: _number_text(values[f], f"steps.{position}.{f}", errors) for f in STEP_NUMBERS})
        step.update({f: bool(values[f]) for f in STEP_FLAGS})
        step["action"] = _raw_action(values["action"], f"steps.{position}.action", errors)
        steps.append(step)
    callers = [c.strip() for c in state["allowed_callers"].split(",") if c.strip()]
    raw: dict[str, Any] = {
        "title": state["title"],
        "description": state["description"],
        "category": state["category"],
        "callable": bool(state["callable"]),
        "max_duration_seconds": _number_text(state["max_duration_seconds"], "max_duration_seconds", errors),
        "environments": list(state["environments"]) or None,
        "allowed_callers": callers or None,
        "steps": steps,
    }
    parameters = state["parameters"].strip()
    raw["parameters"] = _json(parameters, "parameters", errors) if parameters else {}
    return raw, errors


class FieldErrors:
    """Errors of a problem's ``errors`` list, looked up by the field path they name."""

    def __init__(self, errors: Iterable[FieldError] = ()) -> None:
        self.items = [e for e in errors]

    def __bool__(self) -> bool:
        return bool(self.items)

    def at(self, path: str) -> list[str]:
        """Messages about exactly this field."""
        return [e["message"] for e in self.items if e.get("field") == path]

    def under(self, path: str) -> list[str]:
        """Messages about this field or anything inside it, naming the inner path."""
        found = []
        for e in self.items:
            field = e.get("field") or ""
            if field == path:
                found.append(e["message"])
            elif field.startswith(path + "."):
                found.append(f"{field[len(path) + 1:]}: {e['message']}")
        return found

    def anchor(self, path: str, names: Iterable[str]) -> str | None:
        """The id of the form field nearest to ``path`` among ``names``."""
        known = set(names)
        parts = (path or "").split(".")
        while parts:
            candidate = "-".join(parts)
            if candidate in known:
                return "f-" + candidate
            parts.pop()
        return None


def field_names(state: Mapping[str, Any]) -> list[str]:
    """Every field name the editor renders for ``state`` (targets of the error summary's links)."""
    names = ["title", "description", "category", "callable", "max_duration_seconds", "environments", "allowed_callers", "parameters"]
    for i, _ in enumerate(state["steps"]):
        names += [f"steps-{i}"] + [f"steps-{i}-{f}" for f in STEP_TEXT + STEP_NUMBERS + STEP_FLAGS]
        names += [f"steps-{i}-action-{f}" for f in _blank_action()] + [f"steps-{i}-action"]
    return names
