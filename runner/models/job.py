"""Jobs, the timeline of their steps, and the events they emit (the outbox)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, only_on, partial_index


# Jobs that have not ended, and jobs that ended without success: the conditions of their partial indexes.
LIVE_JOBS = "ended_at IS NULL"
UNSUCCESSFUL_JOBS = "status IN ('failed', 'cancelled', 'stopped')"


class Job(Base):
    """One execution of one pinned runbook version."""

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("workspace_id", "idempotency_key"),
        Index("ix_jobs_workspace_id_id", "workspace_id", "id"),
        # A runbook's jobs and a job's children, each in order: pages of a long history read from these (led by the
        # workspace, so that SQLite, which keeps no statistics, prefers them to the one above).
        Index("ix_jobs_workspace_id_runbook_id_id", "workspace_id", "runbook_id", "id"),
        Index("ix_jobs_workspace_id_parent_job_uuid_id", "workspace_id", "parent_job_uuid", "id"),
        # The jobs of a status, in order, without an entry moving at every step: the live ones (queued, running,
        # waiting, paused) enter when created and leave when they end; the unsuccessful ones enter when they end; the
        # successful ones, most of a history, are the workspace's jobs read in order.
        partial_index("ix_jobs_live", "workspace_id", "id", where=LIVE_JOBS),
        partial_index("ix_jobs_workspace_id_unsuccessful", "workspace_id", "status", "id", where=UNSUCCESSFUL_JOBS),
        # Work a worker may claim: every live job has a wake-up time, finished ones none.
        partial_index("ix_jobs_next_run_at", "next_run_at", where="next_run_at IS NOT NULL"),
        # The jobs a worker holds, for its heartbeat: a lease is cleared when the job waits or ends, so this stays small.
        partial_index("ix_jobs_leased", "lease_owner", where="lease_until IS NOT NULL"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    runbook_id: Mapped[int] = mapped_column(ForeignKey("runbooks.id", ondelete="CASCADE"))
    runbook_key: Mapped[str] = mapped_column(String(16))
    runbook_name: Mapped[str] = mapped_column(String(120))
    runbook_version: Mapped[int]
    version_id: Mapped[int] = mapped_column(ForeignKey("runbook_versions.id"))
    environment: Mapped[str] = mapped_column(String(64))
    parameters: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16))
    triggered_by: Mapped[str] = mapped_column(String(16))
    trigger_ref: Mapped[str | None] = mapped_column(String(120))
    actor: Mapped[str] = mapped_column(String(120))
    parent_job_uuid: Mapped[str | None] = mapped_column(String(36))
    root_job_uuid: Mapped[str] = mapped_column(String(36))
    depth: Mapped[int] = mapped_column(default=0)
    parent_step: Mapped[int | None]
    # Runbook id -> RunbookVersion id for the whole call tree, fixed when the root job started.
    pins: Mapped[dict[str, Any]] = mapped_column(default=dict)
    change_ref: Mapped[str | None] = mapped_column(String(120))
    incident_ref: Mapped[str | None] = mapped_column(String(120))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    deadline_at: Mapped[datetime | None]
    # Order of the step being worked on (1-based); 0 before the first step.
    cursor: Mapped[int] = mapped_column(default=0)
    waiting_for: Mapped[str | None] = mapped_column(String(16))
    next_run_at: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(120))
    lease_until: Mapped[datetime | None]
    pause_requested: Mapped[bool] = mapped_column(default=False)
    event_seq: Mapped[int] = mapped_column(default=0)
    ended_by: Mapped[str | None] = mapped_column(String(16))
    ended_by_actor: Mapped[str | None] = mapped_column(String(120))
    stop_reason: Mapped[str | None] = mapped_column(String(40))
    message: Mapped[str | None] = mapped_column(Text)
    stopped_step: Mapped[int | None]


class StepEvent(Base):
    """What happened to one step of one job."""

    __tablename__ = "step_events"
    __table_args__ = (UniqueConstraint("job_id", "order"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    order: Mapped[int]
    title: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]
    note: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str | None] = mapped_column(String(120))
    output: Mapped[dict[str, Any]] = mapped_column(default=dict)
    attempts: Mapped[int] = mapped_column(default=0)
    # An attempt of an automated action began and its outcome is not recorded yet.
    inflight: Mapped[bool] = mapped_column(default=False)
    wake_at: Mapped[datetime | None]
    approved_by: Mapped[str | None] = mapped_column(String(120))
    approved_at: Mapped[datetime | None]
    overdue_emitted: Mapped[bool] = mapped_column(default=False)


class Event(Base):
    """A state change, written in the transaction that made it; the delivery outbox reads these."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_workspace_id_id", "workspace_id", "id"),
        # The feed's order on PostgreSQL (writing transaction, then id); SQLite leaves txid NULL and pages by id alone.
        only_on("postgresql", Index("ix_events_workspace_id_txid_id", "workspace_id", "txid", "id")),
        Index("ix_events_job_id_seq", "job_id", "seq"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    seq: Mapped[int | None]
    type: Mapped[str] = mapped_column(String(40))
    runbook_key: Mapped[str | None] = mapped_column(String(16))
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    # PostgreSQL: the writing transaction's id, so the feed never passes an event whose transaction is still open.
    txid: Mapped[int | None] = mapped_column(BigInteger)
