"""engine: enrollments, step runs, campaign step lists, cursors, webhook outbox

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 02:28:04.657714
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
JSON_DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')
LIVE = sa.text("state IN ('active', 'waiting')")
HAS_SOURCE = sa.text('source_id IS NOT NULL')
PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    op.create_table('engine_cursors',
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('position', BIG_ID, nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_engine_cursors'))
    )
    op.create_table('campaign_step_lists',
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('step_ids', JSON_DOCUMENT, nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_campaign_step_lists_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('campaign_id', 'version', name=op.f('pk_campaign_step_lists'))
    )
    op.create_table('enrollments',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('lead_id', BIG_ID, nullable=False),
    sa.Column('state', sa.Enum('active', 'waiting', 'completed', 'converted', 'exited', 'failed', name='enrollment_state', native_enum=False, create_constraint=True, length=20), nullable=False),
    sa.Column('step_id', sa.String(length=64), nullable=True),
    sa.Column('next_run_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('step_started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('wait_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('waiting_for', sa.String(length=64), nullable=True),
    sa.Column('attempts', JSON_DOCUMENT, nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('campaign_version', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=20), nullable=False),
    sa.Column('source_id', BIG_ID, nullable=True),
    sa.Column('entered_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('exit_reason', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_enrollments_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], name=op.f('fk_enrollments_lead_id_leads'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_enrollments'))
    )
    with op.batch_alter_table('enrollments', schema=None) as batch_op:
        batch_op.create_index('ix_enrollments_due', ['campaign_id', 'next_run_at'], unique=False, postgresql_where=LIVE, sqlite_where=LIVE)
        batch_op.create_index('ix_enrollments_lead_id_campaign_id', ['lead_id', 'campaign_id'], unique=False)
        batch_op.create_index('uq_enrollments_live', ['campaign_id', 'lead_id'], unique=True, postgresql_where=LIVE, sqlite_where=LIVE)
        batch_op.create_index('uq_enrollments_source', ['campaign_id', 'source', 'source_id'], unique=True, postgresql_where=HAS_SOURCE, sqlite_where=HAS_SOURCE)

    op.create_table('step_runs',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('enrollment_id', BIG_ID, nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('lead_id', BIG_ID, nullable=False),
    sa.Column('step_id', sa.String(length=64), nullable=False),
    sa.Column('step_type', sa.String(length=20), nullable=False),
    sa.Column('outcome', sa.String(length=20), nullable=False),
    sa.Column('ran_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('message_id', BIG_ID, nullable=True),
    sa.Column('variant', sa.String(length=64), nullable=True),
    sa.Column('detail', JSON_DOCUMENT, nullable=True),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_step_runs_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['enrollment_id'], ['enrollments.id'], name=op.f('fk_step_runs_enrollment_id_enrollments'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], name=op.f('fk_step_runs_lead_id_leads'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_step_runs_message_id_messages'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_step_runs'))
    )
    with op.batch_alter_table('step_runs', schema=None) as batch_op:
        batch_op.create_index('ix_step_runs_campaign_id_step_id', ['campaign_id', 'step_id'], unique=False)
        batch_op.create_index('ix_step_runs_enrollment_id_step_id', ['enrollment_id', 'step_id'], unique=False)

    op.create_table('webhook_deliveries',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('idempotency_key', sa.String(length=200), nullable=False),
    sa.Column('enrollment_id', BIG_ID, nullable=True),
    sa.Column('campaign_id', sa.Integer(), nullable=True),
    sa.Column('lead_id', BIG_ID, nullable=True),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('payload', JSON_DOCUMENT, nullable=False),
    sa.Column('status', sa.Enum('pending', 'sending', 'delivered', 'failed', name='webhook_status', native_enum=False, create_constraint=True, length=20), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('response_status', sa.Integer(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_webhook_deliveries_campaign_id_campaigns'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['enrollment_id'], ['enrollments.id'], name=op.f('fk_webhook_deliveries_enrollment_id_enrollments'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], name=op.f('fk_webhook_deliveries_lead_id_leads'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_deliveries')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_webhook_deliveries_idempotency_key'))
    )
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_webhook_deliveries_due', ['next_attempt_at'], unique=False, postgresql_where=PENDING, sqlite_where=PENDING)


def downgrade() -> None:
    op.drop_table('webhook_deliveries')
    op.drop_table('step_runs')
    op.drop_table('enrollments')
    op.drop_table('campaign_step_lists')
    op.drop_table('engine_cursors')
