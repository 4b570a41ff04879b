"""The app factory."""
from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from flask import Flask
from apispec import BasePlugin
from flask_smorest import Api

from . import console, metrics, problems
from .api import guards
from .api.context import EXTENSION
from .clock import Clock
from .config import Settings
from .runtime import Runtime
from .schemas.common import ProblemSchema

__all__ = ["create_app", "API_VERSION"]

API_VERSION = "1.0.0"


class RunnerApi(Api):
    """flask-smorest's Api documenting our problem+json errors."""

    ERROR_SCHEMA = ProblemSchema


class OperationIds(BasePlugin):
    """Give every operation a stable operationId (iPaaS importers name actions after it)."""

    def operation_helper(self, path: str | None = None, operations: dict[str, Any] | None = None, **kwargs: Any) -> None:
        for method, operation in (operations or {}).items():
            if "operationId" not in operation:
                parts = [seg for seg in (path or "").split("/") if seg]
                segments = [seg for seg in parts if not seg.startswith("{") and seg not in ("api", "v1", "ws")]
                words = [w for seg in segments for w in re.split(r"[^A-Za-z0-9]+", seg) if w] or ["workspace"]
                if len(parts) > 1 and parts[-1].startswith("{") and words != ["workspace"]:
                    words += ["by", parts[-1].strip("{}")]
                operation["operationId"] = "_".join([method, *words])


def create_app(config: Settings | Mapping[str, Any] | None = None, *, runtime: Runtime | None = None, clock: Clock | None = None) -> Flask:
    """Build the runner's Flask app: defaults, then environment, then ``config`` overrides."""
    if runtime is None:
        settings = config if isinstance(config, Settings) else Settings.from_env(**dict(config or {}))
        runtime = Runtime.from_settings(settings, clock=clock)
    settings = runtime.settings
    logging.basicConfig(level=settings.log_level)

    app = Flask("runner", static_folder=None)
    app.extensions[EXTENSION] = runtime
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        JSON_SORT_KEYS=False,
        API_TITLE="Runbook Manager runner",
        API_VERSION=API_VERSION,
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        API_SPEC_OPTIONS={
            "info": {"description": "Runbooks that call runbooks: author, run, schedule and watch them. "
                                    "Errors are application/problem+json."},
            "security": [{"bearerAuth": []}],
            "components": {"securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}},
        },
    )
    api = RunnerApi(app, spec_kwargs={"extra_plugins": [OperationIds()]})
    from .api import register_blueprints

    register_blueprints(api)
    problems.init_app(app)
    guards.init_app(app)
    metrics.init_app(app)
    console.init_app(app)
    return app
