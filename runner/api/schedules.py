"""Cron schedules of a runbook."""
from __future__ import annotations

from typing import Any

from flask import url_for
from flask.views import MethodView

from ..scheduling import service
from ..schemas.schedule import ScheduleCreateSchema, ScheduleListSchema, SchedulePatchSchema, ScheduleSchema
from .blueprint import Blueprint
from .context import actor, runtime

blp = Blueprint("schedules", __name__, url_prefix="/api/v1/ws/<ws>/runbooks/<key>/schedules",
                description="Run a callable runbook on a cron schedule in a time zone.")


@blp.route("")
class Schedules(MethodView):
    @blp.response(200, ScheduleListSchema)
    def get(self, ws: str, key: str) -> dict[str, Any]:
        """List the runbook's schedules with their next five fire times."""
        return service.list_for_runbook(runtime(), actor(), key)

    @blp.arguments(ScheduleCreateSchema)
    @blp.response(201, ScheduleSchema)
    def post(self, data: dict[str, Any], ws: str, key: str) -> Any:
        """Schedule the runbook; parameters are validated now and again at every fire."""
        created = service.create(runtime(), actor(), key, data)
        return created, 201, {"Location": url_for("schedules.Schedule", ws=ws, key=key, schedule_id=created["id"])}


@blp.route("/<schedule_id>")
class Schedule(MethodView):
    @blp.arguments(SchedulePatchSchema)
    @blp.response(200, ScheduleSchema)
    def patch(self, data: dict[str, Any], ws: str, key: str, schedule_id: str) -> dict[str, Any]:
        """Enable or disable the schedule, or change its expression, time zone or parameters."""
        return service.update_schedule(runtime(), actor(), key, schedule_id, data)

    @blp.response(204)
    def delete(self, ws: str, key: str, schedule_id: str) -> None:
        """Remove the schedule."""
        service.delete(runtime(), actor(), key, schedule_id)
