"""Liveness, readiness and the descriptions of problem types."""
from __future__ import annotations

from typing import Any

from flask.views import MethodView
from marshmallow import Schema, fields

from .. import errors
from ..errors import NotFound
from ..migrate import current_revision, head_revision
from ..problems import problem_response
from .blueprint import Blueprint
from .context import runtime

blp = Blueprint("health", __name__, description="Health checks.")


class HealthSchema(Schema):
    status = fields.String()
    environment = fields.String()
    database = fields.String()
    schema_revision = fields.String(allow_none=True)


@blp.route("/healthz")
class Healthz(MethodView):
    @blp.doc(security=[])
    @blp.response(200, HealthSchema)
    def get(self) -> dict[str, Any]:
        """Say the process is alive (checks nothing else)."""
        return {"status": "ok", "environment": runtime().settings.environment}


@blp.route("/readyz")
class Readyz(MethodView):
    @blp.doc(security=[])
    @blp.response(200, HealthSchema)
    def get(self) -> Any:
        """Say the runner can serve: the database answers and its schema is current."""
        rt = runtime()
        try:
            revision = current_revision(rt.db.engine)
        except Exception as exc:  # noqa: BLE001 - any database failure means "not ready"
            return problem_response(503, "not-ready", "Not ready", f"the database does not answer: {exc.__class__.__name__}: {exc}")
        head = head_revision()
        if revision != head:
            return problem_response(503, "not-ready", "Not ready",
                                    f"the database schema is at {revision!r}, this code needs {head!r}; run 'runbook-manager db upgrade'")
        return {"status": "ready", "environment": rt.settings.environment, "database": rt.db.url.get_backend_name(), "schema_revision": revision}


_PROBLEM_TYPES = {cls.slug: cls for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, errors.RunnerError)}


@blp.route("/problems/<slug>")
class ProblemType(MethodView):
    @blp.doc(security=[])
    def get(self, slug: str) -> dict[str, Any]:
        """Describe a problem type named in an error's `type`."""
        cls = _PROBLEM_TYPES.get(slug)
        if cls is None:
            raise NotFound(f"no problem type {slug!r}")
        return {"type": f"/problems/{slug}", "title": cls.title, "status": cls.status, "description": (cls.__doc__ or cls.title).strip()}
