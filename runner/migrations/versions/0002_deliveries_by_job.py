"""deliveries by job: an index for finding a flow-backed job's Runbook Action delivery

Revision ID: 0002
Revises: 0001
"""
from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A step-less job looks its runbook.invoked delivery up when it finishes: without this, a scan of every delivery.
    op.create_index("ix_deliveries_job_id_event_type", "deliveries", ["job_id", "event_type"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_deliveries_job_id_event_type", table_name="deliveries")
