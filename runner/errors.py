"""The runner's exception tree, branched by how a caller must react.

Each class carries the HTTP status and the stable problem ``type`` slug that
``runner.problems`` turns into an ``application/problem+json`` body.
"""
from __future__ import annotations

from typing import Any

__all__ = [
    "RunnerError",
    "ConfigError",
    "InvalidInput",
    "MalformedRequest",
    "UnsupportedMediaType",
    "PayloadTooLarge",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "Conflict",
    "Gone",
    "IllegalTransition",
    "WrongEnvironment",
    "FieldError",
]

FieldError = dict[str, Any]


class RunnerError(Exception):
    """Base of every error the runner raises on purpose."""

    status = 500
    slug = "internal-error"
    title = "Internal error"

    def __init__(self, detail: str, *, errors: list[FieldError] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []
        self.extra = extra


class ConfigError(RunnerError):
    """The runner's own configuration is unusable (raised at start-up, never to a client)."""

    slug = "configuration-error"
    title = "Configuration error"


class InvalidInput(RunnerError):
    """The request is well-formed but its content is wrong; fix the named fields."""

    status = 422
    slug = "invalid-input"
    title = "Invalid input"


class MalformedRequest(RunnerError):
    """The request cannot be parsed at all (bad JSON, bad cursor, bad query string)."""

    status = 400
    slug = "malformed-request"
    title = "Malformed request"


class UnsupportedMediaType(RunnerError):
    status = 415
    slug = "unsupported-media-type"
    title = "Unsupported media type"


class PayloadTooLarge(RunnerError):
    status = 413
    slug = "payload-too-large"
    title = "Payload too large"


class Unauthorized(RunnerError):
    """No usable credentials: send a valid bearer token."""

    status = 401
    slug = "unauthorized"
    title = "Unauthorized"


class Forbidden(RunnerError):
    """Authenticated, but the role does not allow this action."""

    status = 403
    slug = "forbidden"
    title = "Forbidden"


class NotFound(RunnerError):
    """No such thing in this workspace (also what another workspace's things look like)."""

    status = 404
    slug = "not-found"
    title = "Not found"


class Conflict(RunnerError):
    """The thing exists but is in the wrong state for this request."""

    status = 409
    slug = "conflict"
    title = "Conflict"


class Gone(RunnerError):
    """The thing existed but was revoked or expired."""

    status = 410
    slug = "gone"
    title = "Gone"


class IllegalTransition(Conflict):
    """A job or runbook cannot move from its current state to the requested one."""

    slug = "illegal-transition"
    title = "Illegal state transition"


class WrongEnvironment(RunnerError):
    """The request targets another environment than the one this runner serves."""

    status = 421
    slug = "wrong-environment"
    title = "Wrong environment"
