"""The one place that turns errors into ``application/problem+json`` answers (RFC 9457)."""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, json, request
from werkzeug.exceptions import HTTPException

from .errors import FieldError, RunnerError
from .jsonbody import MalformedJson

__all__ = ["init_app", "problem_response", "flatten_messages", "PROBLEM_TYPE_BASE"]

log = logging.getLogger(__name__)

# Problem types are relative URIs; GET on one returns its description.
PROBLEM_TYPE_BASE = "/problems/"
PROBLEM_MIMETYPE = "application/problem+json"

# Titles and slugs for HTTP errors raised by Flask/werkzeug rather than by the runner.
_HTTP_SLUGS = {
    400: ("malformed-request", "Malformed request"),
    401: ("unauthorized", "Unauthorized"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    409: ("conflict", "Conflict"),
    413: ("payload-too-large", "Payload too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    421: ("wrong-environment", "Wrong environment"),
    422: ("invalid-input", "Invalid input"),
    429: ("too-many-requests", "Too many requests"),
}


def problem_response(status: int, slug: str, title: str, detail: str, *, errors: list[FieldError] | None = None,
                     headers: Mapping[str, str] | None = None, **extra: Any) -> Response:
    """Build a problem+json response."""
    body = {"type": PROBLEM_TYPE_BASE + slug, "title": title, "status": status, "detail": detail, "errors": errors or [], **extra}
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_MIMETYPE)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _lookup(data: Any, path: list[str]) -> Any:
    for part in path:
        if isinstance(data, Mapping) and part in data:
            data = data[part]
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


def flatten_messages(messages: Any, prefix: str = "", data: Any = None) -> list[FieldError]:
    """Turn marshmallow's nested messages into a flat list of ``{field, message, value}``."""
    flat: list[FieldError] = []

    def walk(node: Any, path: list[str]) -> None:
        if isinstance(node, Mapping):
            for key, child in node.items():
                walk(child, path if key == "_schema" else [*path, str(key)])
        elif isinstance(node, list) and all(isinstance(m, str) for m in node):
            field = ".".join(path) or "body"
            for message in node:
                flat.append({"field": field, "message": message, "value": _lookup(data, path)})
        elif isinstance(node, list):
            for child in node:
                walk(child, path)
        else:
            flat.append({"field": ".".join(path) or "body", "message": str(node), "value": _lookup(data, path)})

    walk(messages, [prefix] if prefix else [])
    return flat


def _validation_problem(error: HTTPException) -> Response | None:
    data = getattr(error, "data", None)
    if not isinstance(data, Mapping) or "messages" not in data:
        return None
    if error.code == 400:
        # Answered before reading the body again: it is the body that could not be decoded.
        refused = getattr(error, "exc", None)
        if isinstance(refused, MalformedJson):
            return problem_response(400, "malformed-request", "Malformed request", f"the request body is not valid JSON: {refused.message}",
                                    errors=[refused.error])
        return problem_response(400, "malformed-request", "Malformed request",
                                "the request body is not valid JSON", errors=[{"field": "body", "message": "invalid JSON", "value": None}])
    errors: list[FieldError] = []
    for location, messages in data["messages"].items():
        raw = request.get_json(silent=True) if location == "json" else request.args if location in ("query", "querystring") else None
        errors += flatten_messages(messages, data=raw)
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    return problem_response(422, "invalid-input", "Invalid input", f"the request is invalid: {summary}", errors=errors)


def _handle_runner_error(error: RunnerError) -> Response:
    return problem_response(error.status, error.slug, error.title, error.detail, errors=error.errors, **error.extra)


def _handle_http_exception(error: HTTPException) -> Response:
    validation = _validation_problem(error)
    if validation is not None:
        return validation
    code = error.code or 500
    slug, title = _HTTP_SLUGS.get(code, ("http-error", error.name))
    detail = error.description or error.name
    if code == 413:
        detail = "the request body is larger than this runner accepts (RUNBOOK_MANAGER_MAX_BODY_BYTES)"
    headers = {"Allow": ", ".join(error.valid_methods)} if getattr(error, "valid_methods", None) else None
    return problem_response(code, slug, title, detail, headers=headers)


def _handle_unexpected(error: Exception) -> Response:
    if isinstance(error, HTTPException):
        return _handle_http_exception(error)
    log.exception("unhandled error", exc_info=error)
    return problem_response(500, "internal-error", "Internal error", "the runner failed to handle this request; the error is in its log")


def init_app(app: Flask) -> None:
    """Register the handlers (after flask-smorest's, so these win)."""
    app.register_error_handler(RunnerError, _handle_runner_error)
    app.register_error_handler(HTTPException, _handle_http_exception)
    app.register_error_handler(Exception, _handle_unexpected)
