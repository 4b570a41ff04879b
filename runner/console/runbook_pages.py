"""The Runbooks list, New runbook, the Steps tab (the editor) and the lifecycle buttons."""
from __future__ import annotations

from collections import defaultdict
from typing import Any

from flask import flash, render_template, request

from ..api.context import runtime
from ..auth import Action, Role, allowed, require
from ..errors import Conflict, FieldError, InvalidInput
from ..schemas.common import MAX_PAGE
from ..schemas.runbook import ACTION_TYPES, HTTP_METHODS, RunbookBodySchema, RunbookPatchSchema
from ..services import runbooks as service
from . import editor
from .web import actor, bp, load_form, see_other

# Runbooks per page of the list.
PAGE_SIZE = 50
# Pages of runbooks read at most to collect the category chips.
CATEGORY_PAGES = 10
# The list's status chips, in lifecycle order.
STATUSES = ("draft", "published", "archived")
LIFECYCLE_VERBS = {"publish": "Published", "unpublish": "Unpublished (back to draft)", "archive": "Archived"}


def _categories() -> list[str]:
    found: set[str] = set()
    cursor = None
    for _ in range(CATEGORY_PAGES):
        page = service.list_runbooks(runtime(), actor(), {"limit": MAX_PAGE, "cursor": cursor, "include_archived": True})
        found |= {r["category"] for r in page["items"] if r["category"]}
        cursor = page["next_cursor"]
        if not cursor:
            break
    return sorted(found)


@bp.get("/ws/<ws>/runbooks")
def runbooks(ws: str) -> str:
    """List runbooks, filtered by the status and category chips."""
    status = request.args.get("status") or None
    category = request.args.get("category") or None
    query = {"limit": PAGE_SIZE, "cursor": request.args.get("cursor"), "status": status, "category": category}
    page = service.list_runbooks(runtime(), actor(), query)
    return render_template("console/runbooks.html", page=page, status=status, category=category, categories=_categories(),
                           statuses=STATUSES)


@bp.route("/ws/<ws>/runbooks/new", methods=["GET", "POST"])
def new_runbook(ws: str) -> Any:
    """Create a draft from a title and description, then open its editor."""
    require(actor(), Action.CREATE)
    form = request.form
    if request.method == "GET":
        return render_template("console/new.html", form={}, errors=editor.FieldErrors())
    raw = {"title": form.get("title", ""), "description": form.get("description", ""), "category": form.get("category", ""),
           "callable": "callable" in form}
    if form.get("name", "").strip():
        raw["name"] = form["name"].strip()
    try:
        created = service.create(runtime(), actor(), load_form(RunbookBodySchema(), raw))
    except (InvalidInput, Conflict) as exc:
        return render_template("console/new.html", form=form, errors=editor.FieldErrors(exc.errors), detail=exc.detail), exc.status
    flash(f"Created {created['key']} as a draft. Add its steps, then save.")
    return see_other("console.runbook", ws=ws, key=created["key"])


def _lint_by_step(runbook: dict[str, Any]) -> tuple[dict[int, list[str]], list[str]]:
    per_step: dict[int, list[str]] = defaultdict(list)
    general = []
    for warning in runbook["lint"]:
        if warning["step"] is None:
            general.append(warning["message"])
        else:
            per_step[warning["step"]].append(warning["message"])
    return per_step, general


def _steps_page(runbook: dict[str, Any], state: dict[str, Any], *, errors: list[FieldError] | None = None,
                unsaved: bool = False, conflict: Conflict | None = None) -> str:
    who = actor()
    can_edit = allowed(who, Action.EDIT, runbook_owner=runbook["owner"]) and runbook["status"] != "archived"
    lint_steps, lint_general = ({}, []) if unsaved else _lint_by_step(runbook)
    callables = []
    if can_edit:
        callables = [r for r in service.list_runbooks(runtime(), who, {"limit": MAX_PAGE, "callable": True})["items"]
                     if r["key"] != runbook["key"]]
    return render_template(
        "console/steps.html", rb=runbook, tab="steps", state=state, errors=editor.FieldErrors(errors or []),
        field_names=editor.field_names(state), unsaved=unsaved, conflict=conflict, can_edit=can_edit,
        lint_steps=lint_steps, lint_general=lint_general, roles=[r.value for r in Role], action_types=ACTION_TYPES,
        http_methods=HTTP_METHODS, environments=runtime().settings.environment_labels, callables=callables,
        blank_step=editor.blank_step(),
    )


@bp.route("/ws/<ws>/runbooks/<key>", methods=["GET", "POST"])
def runbook(ws: str, key: str) -> Any:
    """Show the Steps tab; a POST applies an editor button or saves a new version."""
    current = service.get(runtime(), actor(), key)
    if request.method == "GET":
        return _steps_page(current, editor.from_body(current))
    require(actor(), Action.EDIT, runbook_owner=current["owner"])
    state = editor.from_form(request.form)
    if editor.apply_op(state, request.form.get("op", "save")):
        return _steps_page(current, state, unsaved=True)
    raw, decode_errors = editor.to_raw(state)
    raw["base_version"] = request.form.get("overwrite_version") or state["base_version"] or None
    try:
        changes = load_form(RunbookPatchSchema(partial=service.BODY_FIELDS), raw, decode_errors=decode_errors)
        saved = service.patch(runtime(), actor(), key, changes)
    except InvalidInput as exc:
        return _steps_page(current, state, errors=exc.errors, unsaved=True), exc.status
    except Conflict as exc:
        return _steps_page(current, state, unsaved=True, conflict=exc), exc.status
    flash(f"Saved version {saved['version']}.")
    return see_other("console.runbook", ws=ws, key=saved["key"])


@bp.post("/ws/<ws>/runbooks/<key>/<any(publish, unpublish, archive):action>")
def lifecycle(ws: str, key: str, action: str) -> Any:
    """Publish, unpublish or archive the runbook."""
    changed = service.transition(runtime(), actor(), key, action)
    flash(f"{LIFECYCLE_VERBS[action]}: {changed['key']} is now {changed['status']}.")
    return see_other("console.runbook", ws=ws, key=changed["key"])
