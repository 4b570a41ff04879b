"""Checks requests pass before their view runs: no NUL character anywhere (every request); environment, body, identity (the API)."""
from __future__ import annotations

from flask import Flask, g, request

from ..errors import MalformedRequest, PayloadTooLarge, UnsupportedMediaType, WrongEnvironment
from ..services import tenancy
from .context import runtime

__all__ = ["init_app", "ENVIRONMENT_HEADER"]

ENVIRONMENT_HEADER = "X-Runbook-Environment"
API_PREFIX = "/api/v1"
# Inbound webhook callers (CI systems, alerting tools) need not name the environment.
INBOUND_PREFIX = "/api/v1/hooks/in/"
_BODY_METHODS = {"POST", "PUT", "PATCH"}
_FORMS = {"application/x-www-form-urlencoded", "multipart/form-data"}
# Parts of a request whose value a refusal does not show (problem documents end up in clients' logs).
_SECRETS = {"header.authorization", "header.cookie", "form.token", "form.csrf_token"}


def check_environment() -> None:
    """Refuse a request that targets another environment than this runner's."""
    settings = runtime().settings
    wanted = request.headers.get(ENVIRONMENT_HEADER)
    here = f"{settings.environment_label} ({settings.environment})"
    if wanted is None:
        if settings.require_environment_header and not request.path.startswith(INBOUND_PREFIX):
            raise WrongEnvironment(
                f"this runner serves {here} and requires the {ENVIRONMENT_HEADER} header naming the environment a request targets",
                errors=[{"field": ENVIRONMENT_HEADER, "message": "missing", "value": None}],
                runner_environment=settings.environment,
            )
        return
    wanted = wanted.strip()
    if wanted == settings.environment:
        return
    labels = settings.environment_labels
    target = f"{labels[wanted]} ({wanted})" if wanted in labels else f"{wanted!r}, which is not a known environment"
    raise WrongEnvironment(
        f"this runner serves {here}, but the request targets {target}; send it to the runner of that environment",
        errors=[{"field": ENVIRONMENT_HEADER, "message": "another environment", "value": wanted}],
        runner_environment=settings.environment,
        requested_environment=wanted,
    )


def check_body() -> None:
    """Refuse bodies that are too large or not JSON."""
    if request.method not in _BODY_METHODS:
        return
    limit = runtime().settings.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(
            f"the request body is {request.content_length} bytes; this runner accepts at most {limit} (RUNBOOK_MANAGER_MAX_BODY_BYTES)",
            errors=[{"field": "body", "message": "too large", "value": request.content_length}],
        )
    chunked = request.content_length is None and request.headers.get("Transfer-Encoding") == "chunked"
    has_body = (request.content_length or 0) > 0 or chunked
    if has_body and not request.is_json:
        raise UnsupportedMediaType(
            f"send the body as application/json, got {request.mimetype or 'no content type'!r}",
            errors=[{"field": "Content-Type", "message": "not JSON", "value": request.content_type}],
        )
    # A chunked body announces no length, and reading one stops at the limit without saying whether more was sent (the
    # rest would be cut off, and answered as malformed JSON): read one byte past the limit to tell.
    if chunked:
        request.max_content_length = limit + 1
        if len(request.get_data(cache=True)) > limit:
            raise PayloadTooLarge(
                f"the request body (chunked) is over {limit} bytes; this runner accepts at most {limit} (RUNBOOK_MANAGER_MAX_BODY_BYTES)",
                errors=[{"field": "body", "message": "too large", "value": None}],
            )


def authenticate() -> None:
    """Resolve the bearer token of a workspace route into ``g.actor``."""
    slug = (request.view_args or {}).get("ws")
    if slug is None:
        return
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    g.actor = tenancy.authenticate(
        runtime(), token.strip() if scheme.lower() == "bearer" else None, slug, source=request.remote_addr
    )


def refuse_nul() -> None:
    """Refuse a NUL character (U+0000) in the path, the query, a header or a form field: no store keeps one in text.

    (PostgreSQL refuses it in every text and JSON value; a JSON body's are refused by ``runner.jsonbody``.)
    """
    parts = [("path", "", request.path), *(("header", name, value) for name, value in request.headers.items())]
    if b"%00" in request.query_string or b"\x00" in request.query_string:
        parts += [("query", name, value) for name, value in request.args.items(multi=True)]
    if request.method in _BODY_METHODS and request.mimetype in _FORMS:
        parts += [("form", name, value) for name, value in request.form.items(multi=True)]
    for part, name, value in parts:
        if "\x00" in name or "\x00" in value:
            field = f"{part}.{name}".rstrip(".").replace("\x00", "\\u0000")
            shown = None if field.lower() in _SECRETS else value.replace("\x00", "\\u0000")[:80]
            raise MalformedRequest(f"the request's {field} holds a NUL character (U+0000), which is not text",
                                   errors=[{"field": field, "message": "holds a NUL character", "value": shown}])


def _guard() -> None:
    refuse_nul()
    if not request.path.startswith(API_PREFIX):
        return
    check_environment()
    check_body()
    authenticate()


def init_app(app: Flask) -> None:
    """Run the guards before every request (the API's before its routes, the console's too)."""
    app.before_request(_guard)
