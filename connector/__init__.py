"""The Runbook Manager connector: the plugin an iPaaS loads. It reaches the runner over HTTP only."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .client import RunnerClient
from .connection import Connection
from .errors import ConfigurationError, ConnectorError, FatalError, RetriableError, VerificationFailed
from .handlers import HANDLERS

__all__ = ["run", "Connection", "RunnerClient", "HANDLERS", "ConnectorError", "RetriableError", "FatalError",
           "VerificationFailed", "ConfigurationError"]


def run(operation: str, connection: Mapping[str, Any], data: Mapping[str, Any] | None = None, *,
        client: RunnerClient | None = None) -> Any:
    """Run one manifest operation (by handler name) for a connection's fields and the operation's input."""
    if operation not in HANDLERS:
        raise ConfigurationError(f"unknown operation {operation!r}; known: {', '.join(sorted(HANDLERS))}")
    if not isinstance(connection, Mapping) or not isinstance(data or {}, Mapping):
        raise ConfigurationError(f"{operation}: the connection and the input must each be an object of fields")
    client = client or RunnerClient(Connection.from_fields(connection))
    try:
        return HANDLERS[operation](client, data or {})
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        # An input of a type the operation cannot use, or an answer of a shape it does not know (a runner of another
        # version, a proxy's page): the same call would fail again, so it is not retried.
        raise FatalError(f"{operation} could not use an input or the runner's answer: {exc.__class__.__name__}: {exc}") from exc
