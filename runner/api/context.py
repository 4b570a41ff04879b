"""What a view needs from the request: the runtime and the authenticated actor."""
from __future__ import annotations

from flask import current_app, g

from ..auth import Actor
from ..runtime import Runtime

EXTENSION = "runbook_manager"


def runtime() -> Runtime:
    """Return the runtime the app factory attached to this app."""
    return current_app.extensions[EXTENSION]


def actor() -> Actor:
    """Return the actor the request guard authenticated."""
    return g.actor
