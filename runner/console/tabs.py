"""The runbook's Runs, API and History tabs, and its inbound webhook URLs."""
from __future__ import annotations

import json
import shlex
from typing import Any

from flask import flash, render_template, request

from webhooks import inbound

from ..api.context import runtime
from ..auth import Action, allowed
from ..engine import control
from ..errors import Conflict, InvalidInput, RunnerError
from ..schemas.hooks import WebhookUrlCreateSchema
from ..schemas.runbook import DiffQuerySchema
from ..services import runbooks as service
from .paramform import example_values
from .web import actor, base_url, bp, load_form, see_other

# Jobs per page of the Runs tab.
RUNS_PAGE = 25


@bp.get("/ws/<ws>/runbooks/<key>/runs")
def runs(ws: str, key: str) -> str:
    """List the runbook's jobs, newest first."""
    runbook = service.get(runtime(), actor(), key)
    page = control.list_jobs(runtime(), actor(), {"runbook": runbook["key"], "limit": RUNS_PAGE, "cursor": request.args.get("cursor")})
    return render_template("console/runs.html", rb=runbook, tab="runs", page=page)


# Shell variables the copyable commands leave for the reader to set.
SHELL_VARIABLES = ("$RUNBOOK_MANAGER_TOKEN", "$JOB_UUID")


def _double_quoted(text: str) -> str:
    """Quote for a POSIX shell in double quotes, so that only our own variables expand."""
    escaped = "".join("\\" + c if c in '\\"`$' else c for c in text)
    for variable in SHELL_VARIABLES:
        escaped = escaped.replace("\\" + variable, variable)
    return f'"{escaped}"'


def _curl(url: str, headers: list[str], body: dict[str, Any] | None = None) -> str:
    lines = [f"curl -X {'POST' if body is not None else 'GET'} {_double_quoted(url)}"]
    lines += [f"  -H {_double_quoted(h)}" for h in headers]
    if body is not None:
        lines += ["  -H 'Content-Type: application/json'", f"  -d {shlex.quote(json.dumps(body))}"]
    return " \\\n".join(lines)


def _api_page(runbook: dict[str, Any], *, created: dict[str, Any] | None = None, problem: RunnerError | None = None,
              status: int = 200) -> tuple[str, int]:
    who = actor()
    settings = runtime().settings
    api_base = f"{base_url()}/api/v1/ws/{who.workspace_slug}"
    headers = ['Authorization: Bearer $RUNBOOK_MANAGER_TOKEN', f"X-Runbook-Environment: {settings.environment}"]
    invoke_url = f"{api_base}/runbooks/{runbook['key']}/jobs"
    hooks = inbound.list_urls(runtime(), who, runbook["key"])["items"] if allowed(who, Action.AUTOMATE) else None
    return render_template(
        "console/api.html", rb=runbook, tab="api", hooks=hooks, created=created, problem=problem,
        invoke_curl=_curl(invoke_url, headers, {"parameters": example_values(runbook["parameters"])}),
        job_curl=_curl(f"{api_base}/jobs/$JOB_UUID", headers), invoke_url=invoke_url, job_url=f"{api_base}/jobs/{{uuid}}",
        base_url=base_url(), schema_json=json.dumps(runbook["parameters"] or {}, indent=2),
    ), status


@bp.get("/ws/<ws>/runbooks/<key>/api")
def api(ws: str, key: str) -> Any:
    """Show how to invoke the runbook from a script, a flow or a webhook caller."""
    return _api_page(service.get(runtime(), actor(), key))


def _aware(value: str) -> str | None:
    """Read a datetime-local field as UTC."""
    value = value.strip()
    if not value:
        return None
    return value if value.endswith("Z") or "+" in value[10:] else value + "+00:00"


@bp.post("/ws/<ws>/runbooks/<key>/webhooks")
def create_webhook(ws: str, key: str) -> Any:
    """Create an inbound webhook URL and show it, this once."""
    runbook = service.get(runtime(), actor(), key)
    raw = {"require_signature": "require_signature" in request.form, "expires_at": _aware(request.form.get("expires_at", ""))}
    try:
        created = inbound.create_url(runtime(), actor(), runbook["key"], load_form(WebhookUrlCreateSchema(), raw), base_url=base_url())
    except (InvalidInput, Conflict) as exc:
        return _api_page(runbook, problem=exc, status=exc.status)
    return _api_page(runbook, created=created, status=201)


@bp.post("/ws/<ws>/runbooks/<key>/webhooks/<hook_id>/revoke")
def revoke_webhook(ws: str, key: str, hook_id: str) -> Any:
    """Revoke an inbound webhook URL."""
    inbound.revoke_url(runtime(), actor(), key, hook_id)
    flash(f"Revoked webhook URL {hook_id}; calls to it now get 410 Gone.")
    return see_other("console.api", ws=ws, key=key)


@bp.get("/ws/<ws>/runbooks/<key>/history")
def history(ws: str, key: str) -> str:
    """List the saved versions; with From and To, compare them step by step."""
    runbook = service.get(runtime(), actor(), key)
    versions = service.list_versions(runtime(), actor(), key)["items"]
    picked = {name: request.args[name] for name in ("from", "to") if name in request.args}
    diff = None
    if picked:
        query = load_form(DiffQuerySchema(), picked)
        diff = service.diff(runtime(), actor(), key, query["from_"], query["to"])
        chosen = (query["from_"], query["to"])
    else:
        chosen = (versions[1]["version"] if len(versions) > 1 else versions[0]["version"], versions[0]["version"])
    return render_template("console/history.html", rb=runbook, tab="history", versions=versions, diff=diff, chosen=chosen)
