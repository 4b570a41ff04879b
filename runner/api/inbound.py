"""Inbound webhook URLs of callable runbooks, and the endpoint they point at."""
from __future__ import annotations

from typing import Any

from flask import request
from flask.views import MethodView

from webhooks import inbound

from ..schemas.hooks import WebhookUrlCreateSchema, WebhookUrlListSchema, WebhookUrlSchema
from ..schemas.job import JobEnvelopeSchema
from .blueprint import Blueprint
from .context import actor, runtime
from .jobs import IDEMPOTENCY_HEADER

blp = Blueprint("inbound", __name__, url_prefix="/api/v1", description="Start runbooks from webhook callers (CI systems, alerting tools).")


def _base_url() -> str:
    return runtime().settings.public_url or request.host_url


@blp.route("/ws/<ws>/runbooks/<key>/webhooks")
class WebhookUrls(MethodView):
    @blp.response(200, WebhookUrlListSchema)
    def get(self, ws: str, key: str) -> dict[str, Any]:
        """List the runbook's inbound webhook URLs (never the URLs themselves)."""
        return inbound.list_urls(runtime(), actor(), key)

    @blp.arguments(WebhookUrlCreateSchema)
    @blp.response(201, WebhookUrlSchema)
    def post(self, data: dict[str, Any], ws: str, key: str) -> dict[str, Any]:
        """Create an inbound webhook URL for a callable runbook; the URL is shown only in this answer."""
        return inbound.create_url(runtime(), actor(), key, data, base_url=_base_url())


@blp.route("/ws/<ws>/runbooks/<key>/webhooks/<hook_id>")
class WebhookUrl(MethodView):
    @blp.response(204)
    def delete(self, ws: str, key: str, hook_id: str) -> None:
        """Revoke an inbound webhook URL."""
        inbound.revoke_url(runtime(), actor(), key, hook_id)


@blp.route("/hooks/in/<token>", methods=["POST"])
@blp.doc(security=[], parameters=[{"in": "header", "name": IDEMPOTENCY_HEADER, "schema": {"type": "string"}, "required": False}])
@blp.response(202, JobEnvelopeSchema)
def receive(token: str) -> dict[str, Any]:
    """Start a job: the JSON body is the parameters object. Signed URLs need Standard Webhooks headers."""
    job = inbound.receive(runtime(), token, dict(request.headers), request.get_data(), idempotency_key=request.headers.get(IDEMPOTENCY_HEADER))
    return {"job": job}
