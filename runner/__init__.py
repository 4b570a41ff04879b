"""The Runbook Manager runner: a Flask service that stores, runs and schedules runbooks."""
from .app import create_app

__all__ = ["create_app"]
