"""The Runbook Manager runner: a Flask service that stores, runs and schedules runbooks."""
from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    # Imported on first use, so that `runbook-manager serve` can configure metrics before Flask and prometheus load.
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(name)
