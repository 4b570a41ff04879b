"""Execute a runbook, watch its run live, and act on it: step buttons, pause, resume, abort."""
from __future__ import annotations

import uuid
from typing import Any

from flask import flash, jsonify, render_template, request

from ..api.context import runtime
from ..auth import Action, allowed, require, role_satisfies
from ..engine import control
from ..engine.states import JobStatus, Waiting
from ..errors import InvalidInput
from ..schemas.job import AbortSchema, FailSchema, InvokeSchema, SkipSchema, StepNoteSchema
from ..services import runbooks as service
from .editor import FieldErrors
from .paramform import fields_of, values_from_form
from .web import actor, bp, load_form, see_other, wants_json

# How often (milliseconds) the run view asks for the job's state while it is not over.
POLL_MS = 1500
# Per step action: the schema that checks its text, and the field the text goes in.
STEP_FORMS = {"done": (StepNoteSchema, "note"), "approve": (StepNoteSchema, "note"), "skip": (SkipSchema, "reason"),
              "fail": (FailSchema, "note")}
STEP_VERBS = {"done": "marked done", "approve": "approved", "skip": "skipped", "fail": "marked failed"}
JOB_VERBS = {"pause": "Pause requested", "resume": "Resumed", "abort": "Aborted"}


def _execute_page(runbook: dict[str, Any], *, submitted: Any = None, errors: list[dict[str, Any]] | None = None,
                  detail: str | None = None, status: int = 200) -> tuple[str, int]:
    return render_template(
        "console/execute.html", rb=runbook, tab="steps", fields=fields_of(runbook["parameters"]), submitted=submitted,
        errors=FieldErrors(errors or []), detail=detail,
        idempotency_key=(submitted or {}).get("idempotency_key") or f"console:{uuid.uuid4()}",
    ), status


@bp.route("/ws/<ws>/runbooks/<key>/execute", methods=["GET", "POST"])
def execute(ws: str, key: str) -> Any:
    """Ask for the runbook's parameters, then start a job as this person and open its run view."""
    require(actor(), Action.EXECUTE)
    runbook = service.get(runtime(), actor(), key)
    if request.method == "GET":
        return _execute_page(runbook)
    form = request.form
    raw = {"parameters": values_from_form(fields_of(runbook["parameters"]), form),
           **{ref: form[ref].strip() for ref in ("change_ref", "incident_ref") if form.get(ref, "").strip()}}
    try:
        job, _ = control.invoke(runtime(), actor(), runbook["key"], load_form(InvokeSchema(), raw),
                                idempotency_key=form.get("idempotency_key") or None, trigger_kind="person", require_callable=False)
    except InvalidInput as exc:
        return _execute_page(runbook, submitted=form, errors=exc.errors, detail=exc.detail, status=exc.status)
    return see_other("console.run", ws=ws, job_uuid=job["uuid"])


def _step_buttons(job: dict[str, Any], step: dict[str, Any]) -> list[str]:
    """The buttons the engine would accept from this person on this step now (it checks again on click)."""
    if JobStatus(job["status"]).terminal or step["order"] != job["current_step"] or job["status"] != JobStatus.WAITING.value:
        return []
    who = actor()
    operate = allowed(who, Action.OPERATE)
    waiting = job["waiting_for"]
    buttons = []
    if waiting == Waiting.OPERATOR.value and operate:
        buttons.append("done")
    if waiting == Waiting.APPROVAL.value:
        owner_role = step["owner_role"]
        if operate if owner_role is None else role_satisfies(who.role, owner_role):
            buttons.append("approve")
    if waiting in (Waiting.OPERATOR.value, Waiting.APPROVAL.value) and operate:
        buttons += ["skip", "fail"]
    return buttons


def _view(job: dict[str, Any]) -> dict[str, Any]:
    """What the run view shows this person: the buttons they may press."""
    status = JobStatus(job["status"])
    operate = allowed(actor(), Action.OPERATE)
    return {
        "terminal": status.terminal,
        "pause": operate and not status.terminal and status is not JobStatus.PAUSED and not job["pause_requested"],
        "resume": operate and not status.terminal and (status is JobStatus.PAUSED or job["pause_requested"]),
        "abort": operate and not status.terminal,
        "steps": {step["order"]: _step_buttons(job, step) for step in job["steps"]},
        "poll_ms": POLL_MS,
    }


def _live(job: dict[str, Any]) -> dict[str, Any]:
    view = _view(job)
    return {"status": job["status"], "terminal": view["terminal"],
            "html": render_template("console/_run_live.html", job=job, view=view)}


@bp.get("/ws/<ws>/jobs/<job_uuid>")
def run(ws: str, job_uuid: str) -> str:
    """Show a run: every step's status, timing, notes and the buttons this person may press."""
    job = control.get_job(runtime(), actor(), job_uuid)
    return render_template("console/run.html", job=job, view=_view(job))


@bp.get("/ws/<ws>/jobs/<job_uuid>/live")
def live(ws: str, job_uuid: str) -> Any:
    """The run view's changing parts, for the page's script to swap in."""
    return jsonify(_live(control.get_job(runtime(), actor(), job_uuid)))


def _answer(ws: str, job: dict[str, Any], message: str) -> Any:
    if wants_json():
        return jsonify({**_live(job), "message": message})
    flash(message)
    return see_other("console.run", ws=ws, job_uuid=job["uuid"])


@bp.post("/ws/<ws>/jobs/<job_uuid>/steps/<int:order>/<any(done, skip, fail, approve):action>")
def step_action(ws: str, job_uuid: str, order: int, action: str) -> Any:
    """Mark the current step done, skipped (with a reason) or failed (with a note), or approve it."""
    schema, field = STEP_FORMS[action]
    text = request.form.get("note", "")
    data = load_form(schema(), {field: text} if text.strip() or action in ("skip", "fail") else {})
    job = control.step_action(runtime(), actor(), job_uuid, order, action, data.get(field))
    return _answer(ws, job, f"Step {order} {STEP_VERBS[action]}.")


@bp.post("/ws/<ws>/jobs/<job_uuid>/<any(pause, resume, abort):action>")
def job_action(ws: str, job_uuid: str, action: str) -> Any:
    """Pause at the next step boundary, resume, or abort the job now."""
    if action == "abort":
        reason = request.form.get("reason", "").strip()
        job = control.abort(runtime(), actor(), job_uuid, load_form(AbortSchema(), {"reason": reason or None})["reason"])
    else:
        job = {"pause": control.pause, "resume": control.resume}[action](runtime(), actor(), job_uuid)
    return _answer(ws, job, f"{JOB_VERBS[action]}.")
