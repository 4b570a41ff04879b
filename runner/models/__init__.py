"""The runner's tables."""
from .base import Base
from .hooks import Delivery, DeliveryAttempt, InboundMessage, InboundWebhook, Subscription
from .job import Event, Job, StepEvent
from .runbook import Runbook, RunbookStatus, RunbookVersion
from .schedule import Schedule
from .tenancy import ApiToken, AuditEntry, Workspace

__all__ = [
    "Base",
    "Workspace",
    "ApiToken",
    "AuditEntry",
    "Runbook",
    "RunbookStatus",
    "RunbookVersion",
    "Job",
    "StepEvent",
    "Event",
    "Subscription",
    "Delivery",
    "DeliveryAttempt",
    "InboundWebhook",
    "InboundMessage",
    "Schedule",
]
