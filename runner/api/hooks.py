"""REST-hook subscriptions, their delivery log, and the polling feed."""
from __future__ import annotations

from typing import Any

from flask import url_for
from flask.views import MethodView

from webhooks import feed, subscriptions

from ..schemas.hooks import (
    DeliveryPageSchema,
    DeliveryQuerySchema,
    DeliverySchema,
    FeedQuerySchema,
    FeedSchema,
    SubscribeSchema,
    SubscriptionListSchema,
    SubscriptionPatchSchema,
    SubscriptionSchema,
)
from .blueprint import Blueprint
from .context import actor, runtime

blp = Blueprint("hooks", __name__, url_prefix="/api/v1/ws/<ws>",
                description="Subscribe to job events (signed REST hooks), read the delivery log, or poll the event feed.")


@blp.route("/hooks")
class Hooks(MethodView):
    @blp.response(200, SubscriptionListSchema)
    def get(self, ws: str) -> dict[str, Any]:
        """List subscriptions."""
        return subscriptions.list_subscriptions(runtime(), actor())

    @blp.arguments(SubscribeSchema)
    @blp.response(201, SubscriptionSchema)
    def post(self, data: dict[str, Any], ws: str) -> Any:
        """Subscribe a URL to events; answers 201 with a Location to DELETE and the signing secret (shown once)."""
        created = subscriptions.subscribe(runtime(), actor(), data)
        return created, 201, {"Location": url_for("hooks.Hook", ws=ws, sub_id=created["id"])}


@blp.route("/hooks/<sub_id>")
class Hook(MethodView):
    @blp.response(200, SubscriptionSchema)
    def get(self, ws: str, sub_id: str) -> dict[str, Any]:
        """Read a subscription."""
        return subscriptions.get_subscription(runtime(), actor(), sub_id)

    @blp.arguments(SubscriptionPatchSchema)
    @blp.response(200, SubscriptionSchema)
    def patch(self, data: dict[str, Any], ws: str, sub_id: str) -> dict[str, Any]:
        """Renew the expiry, or re-enable a disabled subscription."""
        return subscriptions.update_subscription(runtime(), actor(), sub_id, data)

    @blp.response(204)
    def delete(self, ws: str, sub_id: str) -> None:
        """Unsubscribe."""
        subscriptions.unsubscribe(runtime(), actor(), sub_id)


@blp.route("/hooks/<sub_id>/deliveries")
class Deliveries(MethodView):
    @blp.arguments(DeliveryQuerySchema, location="query")
    @blp.response(200, DeliveryPageSchema)
    def get(self, query: dict[str, Any], ws: str, sub_id: str) -> dict[str, Any]:
        """The delivery log, newest first, with every attempt (status, latency, response excerpt)."""
        return subscriptions.list_deliveries(runtime(), actor(), sub_id, query)


@blp.route("/hooks/<sub_id>/deliveries/<delivery_id>/redeliver", methods=["POST"])
@blp.response(202, DeliverySchema)
def redeliver(ws: str, sub_id: str, delivery_id: str) -> dict[str, Any]:
    """Send a delivery again, with the same webhook-id."""
    return subscriptions.redeliver(runtime(), actor(), sub_id, delivery_id)


@blp.route("/events")
class Feed(MethodView):
    @blp.arguments(FeedQuerySchema, location="query")
    @blp.response(200, FeedSchema)
    def get(self, query: dict[str, Any], ws: str) -> dict[str, Any]:
        """Poll events after a cursor, oldest first (for iPaaS platforms that poll)."""
        return feed.poll(runtime(), actor(), query)
