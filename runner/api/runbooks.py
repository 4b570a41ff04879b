"""Runbook authoring routes."""
from __future__ import annotations

from typing import Any

from flask import url_for
from flask.views import MethodView

from ..schemas.runbook import (
    BundleSchema,
    DiffQuerySchema,
    DiffSchema,
    ExternalStepsSchema,
    ImportSchema,
    RunbookBodySchema,
    RunbookListQuerySchema,
    RunbookPageSchema,
    RunbookPatchSchema,
    RunbookSchema,
    VersionPageSchema,
    VersionSchema,
)
from ..services import runbooks
from .blueprint import Blueprint
from .context import actor, runtime

blp = Blueprint("runbooks", __name__, url_prefix="/api/v1/ws/<ws>/runbooks",
                description="Author runbooks: create, edit (each save is a version), publish, archive, diff, import, export.")


def _created(result: dict[str, Any], ws: str) -> tuple[dict[str, Any], int, dict[str, str]]:
    return result, 201, {"Location": url_for("runbooks.Runbook", ws=ws, key=result["key"])}


@blp.route("")
class Runbooks(MethodView):
    @blp.arguments(RunbookListQuerySchema, location="query")
    @blp.response(200, RunbookPageSchema)
    def get(self, query: dict[str, Any], ws: str) -> dict[str, Any]:
        """List runbooks (archived ones only when asked)."""
        return runbooks.list_runbooks(runtime(), actor(), query)

    @blp.arguments(RunbookBodySchema)
    @blp.response(201, RunbookSchema)
    def post(self, data: dict[str, Any], ws: str) -> Any:
        """Create a draft runbook (version 1)."""
        return _created(runbooks.create(runtime(), actor(), data), ws)


@blp.route("/import")
class Import(MethodView):
    @blp.arguments(ImportSchema)
    @blp.response(201, RunbookSchema)
    def post(self, data: dict[str, Any], ws: str) -> Any:
        """Create a draft from numbered text or markdown, or import an exported bundle."""
        return _created(runbooks.import_runbook(runtime(), actor(), data), ws)


@blp.route("/<key>")
class Runbook(MethodView):
    @blp.response(200, RunbookSchema)
    def get(self, ws: str, key: str) -> dict[str, Any]:
        """Read a runbook by key (RB-00001) or name."""
        return runbooks.get(runtime(), actor(), key)

    @blp.arguments(RunbookPatchSchema(partial=runbooks.BODY_FIELDS))
    @blp.response(200, RunbookSchema)
    def patch(self, changes: dict[str, Any], ws: str, key: str) -> dict[str, Any]:
        """Edit a runbook; the version goes up by one."""
        return runbooks.patch(runtime(), actor(), key, changes)


def _lifecycle(action: str, doc: str) -> None:
    @blp.route(f"/<key>/{action}", methods=["POST"], endpoint=action)
    @blp.response(200, RunbookSchema)
    def view(ws: str, key: str) -> dict[str, Any]:
        return runbooks.transition(runtime(), actor(), key, action)

    view.__doc__ = doc


_lifecycle("publish", "Publish a draft: it becomes pickable and, if callable, invocable.")
_lifecycle("unpublish", "Return a published runbook to draft.")
_lifecycle("archive", "Archive (soft delete) a runbook; its key is never reused.")


@blp.route("/<key>/versions")
class Versions(MethodView):
    @blp.response(200, VersionPageSchema)
    def get(self, ws: str, key: str) -> dict[str, Any]:
        """List saved versions, newest first."""
        return runbooks.list_versions(runtime(), actor(), key)

    @blp.arguments(ExternalStepsSchema)
    @blp.response(201, RunbookSchema)
    def post(self, data: dict[str, Any], ws: str, key: str) -> Any:
        """Save a step list from outside (e.g. a change's implementation plan) as a new version."""
        result = runbooks.save_external_steps(runtime(), actor(), key, data)
        return result, 201, {"Location": url_for("runbooks.Version", ws=ws, key=key, number=result["version"])}


@blp.route("/<key>/versions/<int:number>")
class Version(MethodView):
    @blp.response(200, VersionSchema)
    def get(self, ws: str, key: str, number: int) -> dict[str, Any]:
        """Read one saved version, whole."""
        return runbooks.get_version(runtime(), actor(), key, number)


@blp.route("/<key>/diff")
class Diff(MethodView):
    @blp.arguments(DiffQuerySchema, location="query")
    @blp.response(200, DiffSchema)
    def get(self, query: dict[str, Any], ws: str, key: str) -> dict[str, Any]:
        """Compare two versions: added, removed and changed steps, with line markers."""
        return runbooks.diff(runtime(), actor(), key, query["from_"], query["to"])


@blp.route("/<key>/export")
class Export(MethodView):
    @blp.response(200, BundleSchema)
    def get(self, ws: str, key: str) -> dict[str, Any]:
        """Export the latest version as a bundle to import on another environment's runner."""
        return runbooks.export_bundle(runtime(), actor(), key)
