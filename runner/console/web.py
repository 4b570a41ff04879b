"""The console blueprint: who is asking, CSRF, security headers, template helpers and the one error page."""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import marshmallow as ma
from flask import Blueprint, Response, g, redirect, render_template, request, session, url_for
from werkzeug.exceptions import HTTPException

from ..api.context import runtime
from ..auth import Action, Actor, allowed
from ..errors import FieldError, InvalidInput, NotFound, RunnerError, Unauthorized
from ..problems import flatten_messages, problem_response
from ..services import tenancy
from .markdown import render_markdown
from .session import CSRF_FIELD, check_csrf, csrf_token

__all__ = ["bp", "actor", "wants_json", "see_other", "base_url", "load_form", "when", "minutes_between"]

log = logging.getLogger(__name__)

bp = Blueprint("console", __name__, url_prefix="/console", template_folder="templates", static_folder="static")

# Sent with every console page: only our own script and styles run, nothing frames us, nothing is cached.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; "
                               "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


def actor() -> Actor:
    """Return the signed-in actor of this console request."""
    return g.actor


def wants_json() -> bool:
    """Say whether the caller is the console's own script asking for JSON rather than a page."""
    return request.accept_mimetypes.best_match(["text/html", "application/json"]) == "application/json"


def see_other(endpoint: str, **values: Any) -> Response:
    """Redirect after a POST (303), so a reload never repeats it."""
    return redirect(url_for(endpoint, **values), 303)


def base_url() -> str:
    """Base URL clients reach this runner at: the configured public URL, else this request's host."""
    return (runtime().settings.public_url or request.host_url).rstrip("/")


def load_form(schema: ma.Schema, raw: dict[str, Any], *, decode_errors: list[FieldError] | None = None) -> dict[str, Any]:
    """Load form data through the API's own schema; raise InvalidInput listing every error (text that would not decode first)."""
    decode_errors = list(decode_errors or [])
    try:
        loaded = schema.load(raw)
        errors: list[FieldError] = []
    except ma.ValidationError as exc:
        loaded, errors = {}, flatten_messages(exc.messages, data=raw)
    undecoded = {e["field"] for e in decode_errors}
    errors = decode_errors + [e for e in errors if e["field"] not in undecoded]
    if errors:
        raise InvalidInput("the form is invalid: " + "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5]), errors=errors)
    return loaded


def safe_next(target: str | None) -> str | None:
    """Accept a post-sign-in destination only when it is a console path of this site."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/console/") or target.startswith("//"):
        return None
    return target


@bp.before_request
def _guard() -> None:
    if request.method == "POST":
        check_csrf()
    g.actor = None
    slug = (request.view_args or {}).get("ws")
    if slug is None:
        return
    digest = session.get("token")
    if not digest:
        raise Unauthorized("sign in with an API token to use the console")
    g.actor = tenancy.authenticate_hash(runtime(), digest, slug, source=request.remote_addr)


@bp.after_request
def _headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.endpoint != "console.static":
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/<path:rest>")
def unknown(rest: str) -> Response:
    """Answer an unknown console address with the console's not-found page."""
    raise NotFound(f"there is no console page at /console/{rest}")


def _describe(error: Exception) -> tuple[int, str, str, str, list[dict[str, Any]], dict[str, Any]]:
    if isinstance(error, RunnerError):
        return error.status, error.slug, error.title, error.detail, error.errors, error.extra
    if isinstance(error, HTTPException):
        code = error.code or 500
        return code, "http-error", error.name, error.description or error.name, [], {}
    log.exception("unhandled console error", exc_info=error)
    return 500, "internal-error", "Internal error", "the console failed to show this page; the error is in the runner's log", [], {}


def handle_error(error: Exception) -> Any:
    """Show any error of a console request: a page with the problem's detail and status, or problem+json to the script."""
    status, slug, title, detail, errors, extra = _describe(error)
    if wants_json():
        return problem_response(status, slug, title, detail, errors=errors, **extra)
    if isinstance(error, Unauthorized):
        had_token = session.pop("token", None) is not None
        target = request.full_path.rstrip("?") if request.method == "GET" else None
        return redirect(url_for("console.sign_in", next=target, ended="1" if had_token else None), 303)
    return render_template("console/error.html", status=status, title=title, detail=detail, errors=errors), status


bp.register_error_handler(Exception, handle_error)


def when(value: datetime | None) -> str:
    """Show a timestamp the same way on every page (UTC, to the minute)."""
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "—"


def minutes_between(start: datetime | None, end: datetime | None) -> float | None:
    """Minutes from ``start`` to ``end`` (None when either is unknown)."""
    if start is None or end is None:
        return None
    return round((end - start).total_seconds() / 60, 1)


def number(value: float | int | None, digits: int = 1) -> str:
    """Show a number of minutes or seconds without trailing zeros ("—" when unknown)."""
    if value is None:
        return "—"
    return f"{round(float(value), digits):g}"


def _can(action: str, owner: str | None = None) -> bool:
    who = g.get("actor")
    return who is not None and allowed(who, Action[action], runbook_owner=owner)


@bp.context_processor
def _helpers() -> dict[str, Any]:
    settings = runtime().settings
    return {
        "actor": g.get("actor"),
        "can": _can,
        "csrf_token": csrf_token,
        "csrf_field": CSRF_FIELD,
        "markdown": render_markdown,
        "when": when,
        "minutes_between": minutes_between,
        "number": number,
        "environment_label": settings.environment_label,
        "environment": settings.environment,
    }
