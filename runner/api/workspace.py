"""The environment, the caller's workspace, its tokens and its audit log."""
from __future__ import annotations

from typing import Any

from flask.views import MethodView

from ..auth import Action, require
from ..schemas.tenancy import (
    AuditPageSchema,
    AuditQuerySchema,
    EnvironmentSchema,
    TokenCreateSchema,
    TokenListSchema,
    TokenSchema,
    WorkspaceSchema,
)
from ..services import audit, tenancy
from .blueprint import Blueprint
from .context import actor, runtime

blp = Blueprint("workspace", __name__, url_prefix="/api/v1", description="Environment, workspace, tokens and audit log.")


@blp.route("/environment")
class Environment(MethodView):
    @blp.doc(security=[])
    @blp.response(200, EnvironmentSchema)
    def get(self) -> dict[str, Any]:
        """Say which environment this runner serves."""
        settings = runtime().settings
        return {
            "id": settings.environment,
            "label": settings.environment_label,
            "known": [{"id": k, "label": v} for k, v in settings.environment_labels.items()],
            "require_header": settings.require_environment_header,
        }


@blp.route("/ws/<ws>")
class Workspace(MethodView):
    @blp.response(200, WorkspaceSchema)
    def get(self, ws: str) -> dict[str, Any]:
        """Describe the workspace and who the token acts as (the connector's connection test)."""
        me = actor()
        workspace = tenancy.get_workspace(runtime(), ws)
        return {"slug": workspace.slug, "name": workspace.name, "environment": runtime().settings.environment,
                "subject": me.subject, "role": me.role.value}


@blp.route("/ws/<ws>/tokens")
class Tokens(MethodView):
    @blp.response(200, TokenListSchema)
    def get(self, ws: str) -> dict[str, Any]:
        """List API tokens (never their secrets); workspace owners only."""
        require(actor(), Action.MANAGE_TOKENS)
        return {"items": tenancy.list_tokens(runtime(), actor())}

    @blp.arguments(TokenCreateSchema)
    @blp.response(201, TokenSchema)
    def post(self, data: dict[str, Any], ws: str) -> dict[str, Any]:
        """Create a token; the secret is in this answer only."""
        require(actor(), Action.MANAGE_TOKENS)
        secret, token = tenancy.create_token(runtime(), ws, role=data["role"], subject=data.get("subject"),
                                             expires_at=data.get("expires_at"), actor=actor())
        return {**tenancy.token_to_dict(token), "token": secret}


@blp.route("/ws/<ws>/tokens/<int:token_id>")
class Token(MethodView):
    @blp.response(200, TokenSchema)
    def delete(self, ws: str, token_id: int) -> dict[str, Any]:
        """Revoke a token."""
        require(actor(), Action.MANAGE_TOKENS)
        return tenancy.revoke_token(runtime(), actor(), token_id)


@blp.route("/ws/<ws>/audit")
class Audit(MethodView):
    @blp.arguments(AuditQuerySchema, location="query")
    @blp.response(200, AuditPageSchema)
    def get(self, query: dict[str, Any], ws: str) -> dict[str, Any]:
        """Read the audit log, oldest first."""
        return audit.page(runtime(), actor(), query)
