"""HTTP views: one blueprint per resource."""
from __future__ import annotations

from flask_smorest import Api

from . import health, hooks, inbound, jobs, runbooks, schedules, workspace

__all__ = ["register_blueprints"]


def register_blueprints(api: Api) -> None:
    """Attach every blueprint to the API."""
    for module in (health, workspace, runbooks, jobs, schedules, hooks, inbound):
        api.register_blueprint(module.blp)
