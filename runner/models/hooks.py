"""Outbound subscriptions and their deliveries, inbound webhook URLs and the messages they saw."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, partial_index


class Subscription(Base):
    """A REST hook: events of some types (and runbooks) POSTed, signed, to a target URL."""

    __tablename__ = "subscriptions"
    __table_args__ = (Index("ix_subscriptions_workspace_id_status", "workspace_id", "status"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    event_types: Mapped[list[Any]]
    # Runbook keys whose events are sent; null sends every runbook's.
    runbooks: Mapped[list[Any] | None]
    target_url: Mapped[str] = mapped_column(String(2048))
    secret: Mapped[str] = mapped_column(String(80))
    status: Mapped[str] = mapped_column(String(16))
    expires_at: Mapped[datetime | None]
    failure_streak: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(120))
    disabled_at: Mapped[datetime | None]
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    deleted_at: Mapped[datetime | None]


# Deliveries that ended without success: the condition of their partial index.
UNSUCCESSFUL_DELIVERIES = "status NOT IN ('pending', 'succeeded')"


class Delivery(Base):
    """One event for one subscription; ``id`` is the ``webhook-id``, the same on every attempt."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("subscription_id", "event_id"),
        Index("ix_deliveries_event_id", "event_id"),
        # Deliveries still to be attempted, by when: a finished one (its next_attempt_at null) leaves the index, so
        # claiming reads only the pending ones however long the delivery log grows.
        partial_index("ix_deliveries_pending", "next_attempt_at", where="next_attempt_at IS NOT NULL"),
        # A subscription's deliveries that ended without success (failed, gone, cancelled), newest first: what a person
        # looks for in a long delivery log. A success never enters it. ``list_deliveries`` repeats the condition as it is.
        partial_index("ix_deliveries_subscription_id_unsuccessful", "subscription_id", "event_id", where=UNSUCCESSFUL_DELIVERIES),
        # The deliveries a worker is sending, for its heartbeat: a lease is cleared with the attempt's outcome.
        partial_index("ix_deliveries_leased", "lease_owner", where="lease_until IS NOT NULL"),
        Index("ix_deliveries_job_id_event_type", "job_id", "event_type"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    event_type: Mapped[str] = mapped_column(String(40))
    job_id: Mapped[int | None]
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(default=0)
    # When the next attempt is due; null once the delivery succeeded or was given up.
    next_attempt_at: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(120))
    lease_until: Mapped[datetime | None]
    last_status: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]


class DeliveryAttempt(Base):
    __tablename__ = "delivery_attempts"
    __table_args__ = (Index("ix_delivery_attempts_delivery_id", "delivery_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("deliveries.id", ondelete="CASCADE"))
    attempted_at: Mapped[datetime]
    status_code: Mapped[int | None]
    latency_ms: Mapped[float]
    outcome: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    response_excerpt: Mapped[str | None] = mapped_column(Text)


class InboundWebhook(Base):
    """A secret URL that starts jobs of one callable runbook."""

    __tablename__ = "inbound_webhooks"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    runbook_id: Mapped[int] = mapped_column(ForeignKey("runbooks.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(24))
    require_signature: Mapped[bool] = mapped_column(default=False)
    secret: Mapped[str | None] = mapped_column(String(80))
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(120))
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]


class InboundMessage(Base):
    """A signed inbound message already accepted (its ``webhook-id``), to refuse replays."""

    __tablename__ = "inbound_messages"
    __table_args__ = (UniqueConstraint("webhook_id", "message_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    webhook_id: Mapped[str] = mapped_column(ForeignKey("inbound_webhooks.id", ondelete="CASCADE"))
    message_id: Mapped[str] = mapped_column(String(200))
    received_at: Mapped[datetime]
    job_uuid: Mapped[str | None] = mapped_column(String(36))
