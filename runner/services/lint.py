"""Authoring advice: warnings returned with every save, never a refusal."""
from __future__ import annotations

import re
from typing import Any

from .params import PLACEHOLDER, declared_names, step_placeholders

__all__ = ["lint", "MAX_STEPS"]

# Beyond this many steps a runbook stops being readable; split it into runbooks that call each other.
MAX_STEPS = 20

_COMPOUND = re.compile(r"\b(and then|then|after that|afterwards|followed by|once done)\b", re.I)
_VAGUE = re.compile(
    r"\b(handle (the|this|that|any) (problem|issue|situation)|fix (it|the (problem|issue))|deal with|sort (it )?out|"
    r"take care of|as (needed|appropriate|necessary)|if necessary|do the needful|look into|check things|etc\.?)\b",
    re.I,
)
_AMBIGUOUS_OWNER = re.compile(r"\b(make sure (that )?(someone|somebody|everyone)|someone|somebody)\b", re.I)
_PASSIVE = re.compile(r"\b(should|must|needs? to|has to|is to) be\b", re.I)
_URL = re.compile(r"https?://[^\s)>\]]+", re.I)
_TIMESTAMP = re.compile(r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?)?\b|\b\d{1,2}:\d{2}\s?(?:am|pm|utc)?\b", re.I)
_THRESHOLD = re.compile(r"(?<![\w.])\d+(?:\.\d+)?\s?(?:%|ms|s|sec|secs|seconds|minutes|mins|hours|mb|gb|tb|rps|qps)(?!\w)", re.I)


def _warn(code: str, message: str, step: int | None = None) -> dict[str, Any]:
    return {"code": code, "step": step, "message": message}


def lint(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Return advice on a runbook body: compound, vague or too many steps, hard-coded values, and more."""
    warnings: list[dict[str, Any]] = []
    steps = body.get("steps") or []
    if len(steps) > MAX_STEPS:
        warnings.append(
            _warn("too_many_steps", f"{len(steps)} steps is hard to follow; keep runbooks to {MAX_STEPS} or split them into runbooks that call each other")
        )
    used: set[str] = set()
    for step in steps:
        order = step["order"]
        title = step.get("title") or ""
        text = f"{title}\n{step.get('description') or ''}"
        used |= step_placeholders(step)
        bare = PLACEHOLDER.sub("", text)
        if _COMPOUND.search(title) or title.lower().count(" and ") >= 2:
            warnings.append(_warn("compound_step", f"step {order} does several things ({title!r}); split it into one instruction per step", order))
        if _VAGUE.search(title):
            warnings.append(_warn("vague_step", f"step {order} is vague ({title!r}); say exactly what to do and how to tell it worked", order))
        if _AMBIGUOUS_OWNER.search(title):
            warnings.append(_warn("ambiguous_owner", f"step {order} does not say who acts ({title!r}); name the role or tool", order))
        if _PASSIVE.search(title):
            warnings.append(_warn("not_imperative", f"step {order} is not an instruction ({title!r}); write it in the imperative", order))
        for pattern, kind in ((_URL, "URL"), (_TIMESTAMP, "timestamp"), (_THRESHOLD, "threshold")):
            match = pattern.search(bare)
            if match:
                warnings.append(
                    _warn("hard_coded_value", f"step {order} hard-codes the {kind} {match.group(0)!r}; make it a parameter and write {{{{ params.name }}}}", order)
                )
        if step.get("is_destructive") and not (step.get("rollback_note") or "").strip():
            warnings.append(_warn("destructive_without_rollback", f"step {order} is destructive but has no rollback note", order))
    for name in sorted(declared_names(body.get("parameters") or {}) - used):
        warnings.append(_warn("unused_parameter", f"parameter {name!r} is declared but no step uses it"))
    return warnings
