"""The connector's exception tree, branched by what the iPaaS should do: retry later, or fail the step."""
from __future__ import annotations

from typing import Any

__all__ = ["ConnectorError", "RetriableError", "FatalError", "VerificationFailed", "ConfigurationError"]


class ConnectorError(Exception):
    """Base of every error the connector raises on purpose."""

    def __init__(self, message: str, *, status: int | None = None, problem: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.problem = problem or {}


class RetriableError(ConnectorError):
    """The runner was unreachable, overloaded (429) or failing (5xx) after our retries; the iPaaS may retry the step."""


class FatalError(ConnectorError):
    """The runner refused the request (4xx); retrying the same request cannot succeed. The message is the runner's detail."""


class VerificationFailed(ConnectorError):
    """An incoming delivery is unsigned, wrongly signed, stale, or from another environment."""


class ConfigurationError(ConnectorError):
    """The connection or an input is unusable before anything is sent."""
