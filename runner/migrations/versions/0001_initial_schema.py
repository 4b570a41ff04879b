"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-22 13:36:26.360088
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql
import runner.models.base

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('apscheduler_jobs',
    sa.Column('id', sa.Unicode(length=191), nullable=False),
    sa.Column('next_run_time', sa.Float(precision=25), nullable=True),
    sa.Column('job_state', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_apscheduler_jobs'))
    )
    with op.batch_alter_table('apscheduler_jobs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_apscheduler_jobs_next_run_time'), ['next_run_time'], unique=False)

    op.create_table('workspaces',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('slug', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('created_at', runner.models.base.UTCDateTime(), nullable=False),
    sa.Column('runbook_counter', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_workspaces')),
    sa.UniqueConstraint('slug', name=op.f('uq_workspaces_slug'))
    )
    op.create_table('api_tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('workspace_id', sa.Integer(), nullable=False),
    sa.Column('subject', sa.String(length=120), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('created_at', runner.models.base.UTCDateTime(), nullable=False),
    sa.Column('expires_at', runner.models.base.UTCDateTime(), nullable=True),
    sa.Column('revoked_at', runner.models.base.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_api_tokens_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_api_tokens_token_hash'))
    )
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_tokens_workspace_id'), ['workspace_id'], unique=False)

    op.create_table('audit_entries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('workspace_id', sa.Integer(), nullable=False),
    sa.Column('at', runner.models.base.UTCDateTime(), nullable=False),
    sa.Column('actor', sa.String(length=120), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=True),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('target', sa.String(length=200), nullable=False),
    sa.Column('source', sa.String(length=200), nullable=True),
    sa.Column('detail', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_audit_entries_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_entries'))
    )
    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        batch_op.create_index('ix_audit_entries_workspace_id_id', ['workspace_id', 'id'], unique=False)

    op.create_table('runbooks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('workspace_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=16), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('category', sa.String(length=80), nullable=False),
    sa.Column('owner', sa.String(length=120), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=True),
    sa.Column('callable', sa.Boolean(), nullable=False),
    sa.Column('body', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', runner.models.base.UTCDateTime(), nullable=False),
    sa.Column('updated_at', runner.models.base.UTCDateTime(), nullable=False),
    sa.Column('published_at', runner.models.base.UTCDateTime(), nullable=True),
    sa.Column('archived_at', runner.models.base.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_runbooks_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_runbooks')),
    sa.UniqueConstraint('workspace_id', 'key', name=op.f('uq_runbooks_workspace_id_key')),
    sa.UniqueConstraint('workspace_id', 'name', name=op.f('uq_runbooks_workspace_id_name')),
    sa.UniqueConstraint('workspace_id', 'number', name=op.f('uq_runbooks_workspace_id_number'))
    )
    with op.batch_alter_table('runbooks', schema=None) as batch_op:
        batch_op.create_index('ix_runbooks_workspace_id_status', ['workspace_id', 'status'], unique=False)

    op.create_table('subscriptions',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('workspace_id', sa.Integer(), nullable=False),
    sa.Column('event_types', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('runbooks', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('target_url', sa.String(length=2048), nullable=False),
    sa.Column('secret', sa.String(length=80), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('expires_at', runner.models.base.UTCDateTime(), nullable=True),
    sa.Column('failure_streak', sa.Integer(), nullable=False),
    sa.Column('created_at', runner.models.base.UTCDateTime(), nullable=False),
    sa.Column('created_by', sa.String(length=120), nullable=False),
    sa.Column('disabled_at', runner.models.base.UTCDateTime(), nullable=True),
    sa.Column('disabled_reason', sa.Text(), nullable=True),
    sa.Column('deleted_at', runner.models.base.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_subscriptions_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_subscriptions'))
    )
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.create_index('ix_subscriptions_workspace_id_status', ['workspace_id', 'status'], unique=False)

    op.create_table('inbound_webhooks',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('workspace_id', sa.Integer(), nullable=False),
    sa.Column('runbook_id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('prefix', sa.String(length=24), nullable=False),
    sa.Column('require_signature', sa.Boolean(), nullable=False),
    sa.Column('secret', sa.String(length=80), nullable=True),
    sa.Column('created_at', runner.models.base.UTCDateTime(), nullable=False),
    sa.Column('created_by', sa.String(length=120), nullable=False),
    sa.Column('expires_at', runner.models.base.UTCDateTime(), nullable=True),
    sa.Column('revoked_at', runner.models.base.UTCDateTime(), nullable=True),
    sa.Column('last_used_at', runner.models.base.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['runbook_id'], ['runbooks.id'], name=op.f('fk_inbound_webhooks_runbook_id_runbooks'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_inbound_webhooks_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inbound_webhooks')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_inbound_webhooks_token_hash'))
    )
    with op.batch_alter_table('inbound_webhooks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_inbound_webhooks_runbook_id'), ['runbook_id'], unique=False)

    op.create_table('runbook_versions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('runbook_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('body', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', runner.models.base.UTCDateTime(), nullable=False),
    sa.Column('created_by', sa.String(length=120), nullable=False),
    sa.Column('source', sa.String(length=200), nullable=True),
    sa.ForeignKeyConstraint(['runbook_id'], ['runbooks.id'], name=op.f('fk_runbook_versions_runbook_id_runbooks'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_runbook_versions')),
    sa.UniqueConstraint('runbook_id', 'version', name=op.f('uq_runbook_versions_runbook_id_version'))
    )
    op.create_table('schedules',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('workspace_id', sa.Integer(), nullable=False),
    sa.Column('runbook_id', sa.Integer(), nullable=False),
    sa.Column('cron', sa.String(length=120), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('parameters', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('paused_reason', sa.String(length=200), nullable=True),
    sa.Column('description', sa.String(length=200), nullable=False),
    sa.Column('created_at', runner.models.base.UTCDateTime(), nullable=False),
    sa.Column('created_by', sa.String(length=120), nullable=False),
    sa.Column('updated_at', runner.models.base.UTCDateTime(), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('last_fired_at', runner.models.base.UTCDateTime(), nullable=True),
    sa.Column('last_job_uuid', sa.String(length=36), nullable=True),
    sa.ForeignKeyConstraint(['runbook_id'], ['runbooks.id'], name=op.f('fk_schedules_runbook_id_runbooks'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_schedules_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_schedules'))
    )
    with op.batch_alter_table('schedules', schema=None) as batch_op:
        batch_op.create_index('ix_schedules_runbook_id', ['runbook_id'], unique=False)
        batch_op.create_index('ix_schedules_workspace_id', ['workspace_id'], unique=False)

    op.create_table('inbound_messages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('webhook_id', sa.String(length=40), nullable=False),
    sa.Column('message_id', sa.String(length=200), nullable=False),
    sa.Column('received_at', runner.models.base.UTCDateTime(), nullable=False),
    sa.Column('job_uuid', sa.String(length=36), nullable=True),
    sa.ForeignKeyConstraint(['webhook_id'], ['inbound_webhooks.id'], name=op.f('fk_inbound_messages_webhook_id_inbound_webhooks'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inbound_messages')),
    sa.UniqueConstraint('webhook_id', 'message_id', name=op.f('uq_inbound_messages_webhook_id_message_id'))
    )
    op.create_table('jobs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('uuid', sa.String(length=36), nullable=False),
    sa.Column('workspace_id', sa.Integer(), nullable=False),
    sa.Column('runbook_id', sa.Integer(), nullable=False),
    sa.Column('runbook_key', sa.String(length=16), nullable=False),
    sa.Column('runbook_name', sa.String(length=120), nullable=False),
    sa.Column('runbook_version', sa.Integer(), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('environment', sa.String(length=64), nullable=False),
    sa.Column('parameters', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('triggered_by', sa.String(length=16), nullable=False),
    sa.Column('trigger_ref', sa.String(length=120), nullable=True),
    sa.Column('actor', sa.String(length=120), nullable=False),
    sa.Column('parent_job_uuid', sa.String(length=36), nullable=True),
    sa.Column('root_job_uuid', sa.String(length=36), nullable=False),
    sa.Column('depth', sa.Integer(), nullable=False),
    sa.Column('parent_step', sa.Integer(), nullable=True),
    sa.Column('pins', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('change_ref', sa.String(length=120), nullable=True),
    sa.Column('incident_ref', sa.String(length=120), nullable=True),
    sa.Column('idempotency_key', sa.String(length=200), nullable=True),
    sa.Column('request_hash', sa.String(length=64), nullable=True),
    sa.Column('created_at', runner.models.base.UTCDateTime(), nullable=False),
    sa.Column('started_at', runner.models.base.UTCDateTime(), nullable=True),
    sa.Column('ended_at', runner.models.base.UTCDateTime(), nullable=True),
    sa.Column('deadline_at', runner.models.base.UTCDateTime(), nullable=True),
    sa.Column('cursor', sa.Integer(), nullable=False),
    sa.Column('waiting_for', sa.String(length=16), nullable=True),
    sa.Column('next_run_at', runner.models.base.UTCDateTime(), nullable=True),
    sa.Column('lease_owner', sa.String(length=120), nullable=True),
    sa.Column('lease_until', runner.models.base.UTCDateTime(), nullable=True),
    sa.Column('pause_requested', sa.Boolean(), nullable=False),
    sa.Column('event_seq', sa.Integer(), nullable=False),
    sa.Column('ended_by', sa.String(length=16), nullable=True),
    sa.Column('ended_by_actor', sa.String(length=120), nullable=True),
    sa.Column('stop_reason', sa.String(length=40), nullable=True),
    sa.Column('message', sa.Text(), nullable=True),
    sa.Column('stopped_step', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['runbook_id'], ['runbooks.id'], name=op.f('fk_jobs_runbook_id_runbooks'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['version_id'], ['runbook_versions.id'], name=op.f('fk_jobs_version_id_runbook_versions')),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_jobs_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_jobs')),
    sa.UniqueConstraint('uuid', name=op.f('uq_jobs_uuid')),
    sa.UniqueConstraint('workspace_id', 'idempotency_key', name=op.f('uq_jobs_workspace_id_idempotency_key'))
    )
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.create_index('ix_jobs_next_run_at', ['next_run_at'], unique=False, postgresql_where=sa.text('next_run_at IS NOT NULL'), sqlite_where=sa.text('next_run_at IS NOT NULL'))
        batch_op.create_index('ix_jobs_parent_job_uuid', ['parent_job_uuid'], unique=False)
        batch_op.create_index('ix_jobs_runbook_id_id', ['runbook_id', 'id'], unique=False)
        batch_op.create_index('ix_jobs_workspace_id_id', ['workspace_id', 'id'], unique=False)

    op.create_table('events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('workspace_id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=True),
    sa.Column('seq', sa.Integer(), nullable=True),
    sa.Column('type', sa.String(length=40), nullable=False),
    sa.Column('runbook_key', sa.String(length=16), nullable=True),
    sa.Column('payload', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', runner.models.base.UTCDateTime(), nullable=False),
    sa.Column('txid', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_events_job_id_jobs'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_events_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_events'))
    )
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.create_index('ix_events_job_id_seq', ['job_id', 'seq'], unique=False)
        batch_op.create_index('ix_events_workspace_id_id', ['workspace_id', 'id'], unique=False)
        batch_op.create_index('ix_events_workspace_id_txid_id', ['workspace_id', 'txid', 'id'], unique=False)

    op.create_table('step_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('order', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('started_at', runner.models.base.UTCDateTime(), nullable=False),
    sa.Column('completed_at', runner.models.base.UTCDateTime(), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('actor', sa.String(length=120), nullable=True),
    sa.Column('output', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('inflight', sa.Boolean(), nullable=False),
    sa.Column('wake_at', runner.models.base.UTCDateTime(), nullable=True),
    sa.Column('approved_by', sa.String(length=120), nullable=True),
    sa.Column('approved_at', runner.models.base.UTCDateTime(), nullable=True),
    sa.Column('overdue_emitted', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_step_events_job_id_jobs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_step_events')),
    sa.UniqueConstraint('job_id', 'order', name=op.f('uq_step_events_job_id_order'))
    )
    op.create_table('deliveries',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('workspace_id', sa.Integer(), nullable=False),
    sa.Column('subscription_id', sa.String(length=40), nullable=False),
    sa.Column('event_id', sa.Integer(), nullable=False),
    sa.Column('event_type', sa.String(length=40), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', runner.models.base.UTCDateTime(), nullable=True),
    sa.Column('lease_owner', sa.String(length=120), nullable=True),
    sa.Column('lease_until', runner.models.base.UTCDateTime(), nullable=True),
    sa.Column('last_status', sa.Integer(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', runner.models.base.UTCDateTime(), nullable=False),
    sa.Column('completed_at', runner.models.base.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['event_id'], ['events.id'], name=op.f('fk_deliveries_event_id_events'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['subscription_id'], ['subscriptions.id'], name=op.f('fk_deliveries_subscription_id_subscriptions'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_deliveries_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_deliveries')),
    sa.UniqueConstraint('subscription_id', 'event_id', name=op.f('uq_deliveries_subscription_id_event_id'))
    )
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_deliveries_due', ['next_attempt_at'], unique=False)
        batch_op.create_index('ix_deliveries_event_id', ['event_id'], unique=False)

    op.create_table('delivery_attempts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('delivery_id', sa.String(length=40), nullable=False),
    sa.Column('attempted_at', runner.models.base.UTCDateTime(), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=True),
    sa.Column('latency_ms', sa.Double(), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('response_excerpt', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['delivery_id'], ['deliveries.id'], name=op.f('fk_delivery_attempts_delivery_id_deliveries'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_delivery_attempts'))
    )
    with op.batch_alter_table('delivery_attempts', schema=None) as batch_op:
        batch_op.create_index('ix_delivery_attempts_delivery_id', ['delivery_id'], unique=False)


    if op.get_bind().dialect.name == "postgresql":
        # Each event records the id of the transaction that wrote it; the polling feed never reads past
        # the oldest transaction still open, so a late commit can never be skipped.
        op.execute("ALTER TABLE events ALTER COLUMN txid SET DEFAULT pg_current_xact_id()::text::bigint")


def downgrade() -> None:
    with op.batch_alter_table('delivery_attempts', schema=None) as batch_op:
        batch_op.drop_index('ix_delivery_attempts_delivery_id')

    op.drop_table('delivery_attempts')
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_event_id')
        batch_op.drop_index('ix_deliveries_due')

    op.drop_table('deliveries')
    op.drop_table('step_events')
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index('ix_events_workspace_id_txid_id')
        batch_op.drop_index('ix_events_workspace_id_id')
        batch_op.drop_index('ix_events_job_id_seq')

    op.drop_table('events')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_workspace_id_id')
        batch_op.drop_index('ix_jobs_runbook_id_id')
        batch_op.drop_index('ix_jobs_parent_job_uuid')
        batch_op.drop_index('ix_jobs_next_run_at', postgresql_where=sa.text('next_run_at IS NOT NULL'), sqlite_where=sa.text('next_run_at IS NOT NULL'))

    op.drop_table('jobs')
    op.drop_table('inbound_messages')
    with op.batch_alter_table('schedules', schema=None) as batch_op:
        batch_op.drop_index('ix_schedules_workspace_id')
        batch_op.drop_index('ix_schedules_runbook_id')

    op.drop_table('schedules')
    op.drop_table('runbook_versions')
    with op.batch_alter_table('inbound_webhooks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_inbound_webhooks_runbook_id'))

    op.drop_table('inbound_webhooks')
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.drop_index('ix_subscriptions_workspace_id_status')

    op.drop_table('subscriptions')
    with op.batch_alter_table('runbooks', schema=None) as batch_op:
        batch_op.drop_index('ix_runbooks_workspace_id_status')

    op.drop_table('runbooks')
    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_entries_workspace_id_id')

    op.drop_table('audit_entries')
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_tokens_workspace_id'))

    op.drop_table('api_tokens')
    op.drop_table('workspaces')
    with op.batch_alter_table('apscheduler_jobs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_apscheduler_jobs_next_run_time'))

    op.drop_table('apscheduler_jobs')
