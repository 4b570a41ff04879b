"""Step-level comparison of two runbook versions, with line markers for changed text."""
from __future__ import annotations

import difflib
from typing import Any

__all__ = ["diff_bodies"]

# Fields compared between two versions of a step (order is implied by position).
STEP_FIELDS = (
    "title",
    "description",
    "owner_role",
    "est_minutes",
    "verification",
    "rollback_note",
    "requires_approval",
    "is_destructive",
    "idempotent",
    "timeout_seconds",
    "action",
)
RUNBOOK_FIELDS = ("name", "title", "description", "category", "owner", "parameters", "callable", "allowed_callers", "max_duration_seconds", "environments")
# Two steps in a replaced block are the same step edited when their titles are at least this similar.
SIMILARITY_THRESHOLD = 0.5


def _field_change(before: Any, after: Any) -> dict[str, Any]:
    if isinstance(before, str) and isinstance(after, str) and ("\n" in before or "\n" in after or len(before) > 60 or len(after) > 60):
        lines = list(difflib.ndiff(before.splitlines(), after.splitlines()))
        return {"from": before, "to": after, "lines": [line for line in lines if not line.startswith("? ")]}
    if isinstance(before, str) and isinstance(after, str):
        return {"from": before, "to": after, "lines": [f"- {before}", f"+ {after}"]}
    return {"from": before, "to": after}


def _compare(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    return {f: _field_change(old.get(f), new.get(f)) for f in STEP_FIELDS if old.get(f) != new.get(f)}


def _similar(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return difflib.SequenceMatcher(None, a.get("title", "").lower(), b.get("title", "").lower()).ratio() >= SIMILARITY_THRESHOLD


def diff_bodies(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Compare two runbook bodies: added / removed / changed / unchanged steps and changed runbook fields."""
    old_steps, new_steps = old.get("steps") or [], new.get("steps") or []
    matcher = difflib.SequenceMatcher(None, [s["title"] for s in old_steps], [s["title"] for s in new_steps], autojunk=False)
    entries: list[dict[str, Any]] = []

    def pair(o: dict[str, Any], n: dict[str, Any]) -> None:
        fields = _compare(o, n)
        entries.append(
            {"change": "changed" if fields else "unchanged", "from_order": o["order"], "to_order": n["order"], "title": n["title"], "fields": fields}
        )

    def removed(o: dict[str, Any]) -> None:
        entries.append({"change": "removed", "from_order": o["order"], "to_order": None, "title": o["title"], "step": o})

    def added(n: dict[str, Any]) -> None:
        entries.append({"change": "added", "from_order": None, "to_order": n["order"], "title": n["title"], "step": n})

    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            for o, n in zip(old_steps[i1:i2], new_steps[j1:j2], strict=True):
                pair(o, n)
        elif tag == "delete":
            for o in old_steps[i1:i2]:
                removed(o)
        elif tag == "insert":
            for n in new_steps[j1:j2]:
                added(n)
        else:
            olds, news = old_steps[i1:i2], new_steps[j1:j2]
            for k in range(max(len(olds), len(news))):
                o = olds[k] if k < len(olds) else None
                n = news[k] if k < len(news) else None
                if o is not None and n is not None and _similar(o, n):
                    pair(o, n)
                else:
                    if o is not None:
                        removed(o)
                    if n is not None:
                        added(n)
    runbook_fields = {f: _field_change(old.get(f), new.get(f)) for f in RUNBOOK_FIELDS if old.get(f) != new.get(f)}
    summary = {kind: sum(1 for e in entries if e["change"] == kind) for kind in ("added", "removed", "changed", "unchanged")}
    return {"steps": entries, "runbook": runbook_fields, "summary": summary}
