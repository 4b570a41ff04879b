"""indexes for a long history: what the workers and the pages people read look up stays small as jobs pile up

``ix_deliveries_due`` held every delivery ever made, the finished ones under a
null ``next_attempt_at``; on PostgreSQL, before the table's statistics caught
up with its growth, claiming read the whole table. ``ix_deliveries_pending``
holds the pending deliveries alone.

Every worker renews the leases it holds every third of the lease time, by
``lease_owner``, which no index covered: with a million jobs that was a scan
of the whole table every ten seconds, on SQLite while holding the single
writer. ``ix_jobs_leased`` and ``ix_deliveries_leased`` index the owner of
the rows that hold a lease (``lease_until`` set), a handful at any time.

A runbook's jobs and a job's children are listed newest first from
``(workspace_id, runbook_id, id)`` and ``(workspace_id, parent_job_uuid,
id)``, which replace indexes without the workspace that SQLite, keeping no
statistics, passed over for the workspace's ``(workspace_id, id)``. The live
jobs (``ended_at`` null) and the unsuccessful ones (failed, cancelled,
stopped) have partial indexes of their own, whose entries do not move as a
job goes from step to step. A subscription's
deliveries that ended without success are listed from a partial
``(subscription_id, event_id)`` index that no success ever enters.

On PostgreSQL the indexes are built and dropped concurrently, so runners keep
working (and writing) while a large store is indexed; an upgrade interrupted
half way can be run again (an invalid index a build left is dropped and built
anew, the others are kept).

Revision ID: 0004
Revises: 0003
"""
from __future__ import annotations

import sqlalchemy as sa

from runner.migrate import apply_indexes

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_PENDING = sa.text("next_attempt_at IS NOT NULL")
_LEASED = sa.text("lease_until IS NOT NULL")
# (table, index, columns, condition of a partial index) of each index this revision adds.
_ADDED = (
    ("deliveries", "ix_deliveries_pending", ["next_attempt_at"], _PENDING),
    ("jobs", "ix_jobs_leased", ["lease_owner"], _LEASED),
    ("deliveries", "ix_deliveries_leased", ["lease_owner"], _LEASED),
    ("jobs", "ix_jobs_workspace_id_runbook_id_id", ["workspace_id", "runbook_id", "id"], None),
    ("jobs", "ix_jobs_workspace_id_parent_job_uuid_id", ["workspace_id", "parent_job_uuid", "id"], None),
    ("jobs", "ix_jobs_live", ["workspace_id", "id"], sa.text("ended_at IS NULL")),
    ("jobs", "ix_jobs_workspace_id_unsuccessful", ["workspace_id", "status", "id"], sa.text("status IN ('failed', 'cancelled', 'stopped')")),
    ("deliveries", "ix_deliveries_subscription_id_unsuccessful", ["subscription_id", "event_id"],
     sa.text("status NOT IN ('pending', 'succeeded')")),
)
# (table, index, columns) of each index it replaces.
_REPLACED = (
    ("deliveries", "ix_deliveries_due", ["next_attempt_at"]),
    ("jobs", "ix_jobs_runbook_id_id", ["runbook_id", "id"]),
    ("jobs", "ix_jobs_parent_job_uuid", ["parent_job_uuid"]),
)


def upgrade() -> None:
    apply_indexes(list(_ADDED), [(table, name) for table, name, _ in _REPLACED])


def downgrade() -> None:
    apply_indexes([(table, name, columns, None) for table, name, columns in _REPLACED], [(table, name) for table, name, _, _ in _ADDED])
