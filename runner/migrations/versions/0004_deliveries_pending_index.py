"""deliveries due: index only the pending ones

``ix_deliveries_due`` held every delivery ever made, the finished ones under a
null ``next_attempt_at``. Claiming looks only for pending deliveries due now;
on PostgreSQL, before the table's statistics caught up with its growth, the
planner read the whole table instead (a sequential scan per claim), and dead
row versions of finished deliveries stayed in the index until vacuumed.
``ix_deliveries_pending`` holds the pending ones alone.

On PostgreSQL both indexes are built and dropped concurrently, so a runner
keeps delivering (and writing deliveries) while a large table is indexed.

Revision ID: 0004
Revises: 0003
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_PENDING = sa.text("next_attempt_at IS NOT NULL")


def _swap(create: dict[str, object], drop: str) -> None:
    """Create one index of ``deliveries``, then drop the other (on PostgreSQL concurrently, outside a transaction)."""
    if op.get_bind().dialect.name != "postgresql":
        op.create_index(table_name="deliveries", **create)
        op.drop_index(drop, table_name="deliveries")
        return
    with op.get_context().autocommit_block():
        op.create_index(table_name="deliveries", postgresql_concurrently=True, **create)
        op.drop_index(drop, table_name="deliveries", postgresql_concurrently=True)


def upgrade() -> None:
    _swap({"index_name": "ix_deliveries_pending", "columns": ["next_attempt_at"], "postgresql_where": _PENDING, "sqlite_where": _PENDING},
          "ix_deliveries_due")


def downgrade() -> None:
    _swap({"index_name": "ix_deliveries_due", "columns": ["next_attempt_at"]}, "ix_deliveries_pending")
