"""events' (workspace, txid, id) index on PostgreSQL only

On SQLite ``events.txid`` is always NULL and the event feed pages by id alone
(``ix_events_workspace_id_id``), so the index only made every event's insert
write one more index entry.

Revision ID: 0003
Revises: 0002
"""
from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.drop_index("ix_events_workspace_id_txid_id", table_name="events")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.create_index("ix_events_workspace_id_txid_id", "events", ["workspace_id", "txid", "id"], unique=False)
