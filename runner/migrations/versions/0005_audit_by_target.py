"""the audit log of one target, for every target but a job

``GET /audit?target=`` walked the log from its start until the page was
full: over a million entries, most of them about jobs, 113–133 ms on SQLite
and 90 ms on PostgreSQL for a runbook's few entries. A partial
``(workspace_id, target, id)`` index holds the entries about anything but a
job (runbooks, schedules, tokens, subscriptions, webhook URLs, deliveries,
the workspace), whose targets are never shaped like a UUID; the entries a
job's life writes, nearly all of the log, stay out of it, so running jobs
pays nothing for it. A job's entries are still read by walking the log.

Revision ID: 0005
Revises: 0004
"""
from __future__ import annotations

import sqlalchemy as sa

from runner.migrate import apply_indexes

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# The condition as this revision writes it (the model's NOT_ABOUT_A_JOB, which the audit page repeats, must stay equal to it).
_NOT_ABOUT_A_JOB = sa.text("target NOT LIKE '________-____-____-____-____________'")
_ADDED = [("audit_entries", "ix_audit_entries_not_about_a_job", ["workspace_id", "target", "id"], _NOT_ABOUT_A_JOB)]


def upgrade() -> None:
    apply_indexes(_ADDED, [])


def downgrade() -> None:
    apply_indexes([], [(table, name) for table, name, _, _ in _ADDED])
