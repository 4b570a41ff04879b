"""Cron schedules of runbooks (the scheduler keeps its timing state in APScheduler's job store)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, Float, ForeignKey, Index, LargeBinary, String, Table, Unicode
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base


class Schedule(Base):
    __tablename__ = "schedules"
    __table_args__ = (Index("ix_schedules_runbook_id", "runbook_id"), Index("ix_schedules_workspace_id", "workspace_id"))

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    runbook_id: Mapped[int] = mapped_column(ForeignKey("runbooks.id", ondelete="CASCADE"))
    cron: Mapped[str] = mapped_column(String(120))
    timezone: Mapped[str] = mapped_column(String(64))
    parameters: Mapped[dict[str, Any]]
    enabled: Mapped[bool]
    # Why the system (not a person) paused it, e.g. "runbook archived".
    paused_reason: Mapped[str | None] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(120))
    updated_at: Mapped[datetime]
    # Starts at a random number and goes up by one with every change, so the sum over the enabled schedules
    # (with their count) changes whenever one is added, edited, enabled, disabled or removed: the scheduler
    # notices changes with one cheap aggregate instead of reading every schedule twice a second.
    revision: Mapped[int] = mapped_column(default=1)
    last_fired_at: Mapped[datetime | None]
    last_job_uuid: Mapped[str | None] = mapped_column(String(36))


# APScheduler's SQLAlchemy job store table (same shape as the one it would create), so that
# Alembic owns the whole schema. It holds each enabled schedule's pickled trigger and next fire time.
apscheduler_jobs = Table(
    "apscheduler_jobs",
    Base.metadata,
    Column("id", Unicode(191), primary_key=True),
    Column("next_run_time", Float(25), index=True),
    Column("job_state", LargeBinary, nullable=False),
)
