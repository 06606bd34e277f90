"""tracking and scoring: engagement events, provider events, preferences, API keys, scoring rules, lead
scores, score entries and caps; seeded with the default scoring file

Revision ID: 0006
Revises: 0004
Create Date: 2026-11-23 03:20:00.000000
"""

from datetime import UTC, datetime
from uuid import uuid4

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0006'
down_revision = '0004'
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
JSON_DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')
PENDING = sa.text('processed_at IS NULL')


def upgrade() -> None:
    op.create_table('api_keys',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys')),
    sa.UniqueConstraint('key_hash', name=op.f('uq_api_keys_key_hash')),
    sa.UniqueConstraint('name', name=op.f('uq_api_keys_name'))
    )
    op.create_table('provider_events',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('provider', sa.String(length=20), nullable=False),
    sa.Column('provider_event_id', sa.String(length=200), nullable=False),
    sa.Column('payload', JSON_DOCUMENT, nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('processed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('outcome', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_provider_events')),
    sa.UniqueConstraint('provider', 'provider_event_id', name=op.f('uq_provider_events_provider'))
    )
    with op.batch_alter_table('provider_events', schema=None) as batch_op:
        batch_op.create_index('ix_provider_events_pending', ['id'], unique=False, postgresql_where=PENDING, sqlite_where=PENDING)

    op.create_table('score_rules',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('definition', JSON_DOCUMENT, nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_score_rules')),
    sa.UniqueConstraint('name', name=op.f('uq_score_rules_name'))
    )
    op.create_table('scoring_settings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('document', JSON_DOCUMENT, nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('loaded_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revision', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scoring_settings'))
    )
    op.create_table('lead_preferences',
    sa.Column('lead_id', BIG_ID, nullable=False),
    sa.Column('topics_off', JSON_DOCUMENT, nullable=False),
    sa.Column('paused_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], name=op.f('fk_lead_preferences_lead_id_leads'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('lead_id', name=op.f('pk_lead_preferences'))
    )
    op.create_table('lead_scores',
    sa.Column('lead_id', BIG_ID, nullable=False),
    sa.Column('fit', sa.Integer(), nullable=False),
    sa.Column('engagement', sa.Float(), nullable=False),
    sa.Column('engagement_at_us', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], name=op.f('fk_lead_scores_lead_id_leads'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('lead_id', name=op.f('pk_lead_scores'))
    )
    op.create_table('score_caps',
    sa.Column('lead_id', BIG_ID, nullable=False),
    sa.Column('rule_id', sa.Integer(), nullable=False),
    sa.Column('period_start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used', sa.Integer(), nullable=False),
    sa.Column('last_award', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], name=op.f('fk_score_caps_lead_id_leads'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['rule_id'], ['score_rules.id'], name=op.f('fk_score_caps_rule_id_score_rules'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('lead_id', 'rule_id', 'period_start', name=op.f('pk_score_caps'))
    )
    op.create_table('engagement_events',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('lead_id', BIG_ID, nullable=False),
    sa.Column('message_id', BIG_ID, nullable=True),
    sa.Column('campaign', sa.String(length=100), nullable=True),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('source', sa.String(length=20), nullable=False),
    sa.Column('machine', sa.Boolean(), nullable=False),
    sa.Column('machine_reason', sa.String(length=200), nullable=True),
    sa.Column('url', sa.Text(), nullable=True),
    sa.Column('properties', JSON_DOCUMENT, nullable=False),
    sa.Column('raw', JSON_DOCUMENT, nullable=True),
    sa.Column('dedupe_key', sa.String(length=200), nullable=False),
    sa.Column('processed_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], name=op.f('fk_engagement_events_lead_id_leads'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_engagement_events_message_id_messages'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_engagement_events')),
    sa.UniqueConstraint('dedupe_key', name=op.f('uq_engagement_events_dedupe_key'))
    )
    with op.batch_alter_table('engagement_events', schema=None) as batch_op:
        batch_op.create_index('ix_engagement_events_lead_id_occurred_at', ['lead_id', 'occurred_at'], unique=False)
        batch_op.create_index('ix_engagement_events_message_id_type', ['message_id', 'type'], unique=False)
        batch_op.create_index('ix_engagement_events_pending', ['id'], unique=False, postgresql_where=PENDING, sqlite_where=PENDING)
        batch_op.create_index('ix_engagement_events_type_occurred_at', ['type', 'occurred_at'], unique=False)

    op.create_table('score_entries',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('lead_id', BIG_ID, nullable=False),
    sa.Column('rule_id', sa.Integer(), nullable=True),
    sa.Column('rule_name', sa.String(length=100), nullable=False),
    sa.Column('event_id', BIG_ID, nullable=True),
    sa.Column('event_type', sa.String(length=64), nullable=True),
    sa.Column('points', sa.Integer(), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['event_id'], ['engagement_events.id'], name=op.f('fk_score_entries_event_id_engagement_events'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], name=op.f('fk_score_entries_lead_id_leads'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['rule_id'], ['score_rules.id'], name=op.f('fk_score_entries_rule_id_score_rules'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_score_entries'))
    )
    with op.batch_alter_table('score_entries', schema=None) as batch_op:
        batch_op.create_index('ix_score_entries_lead_id_occurred_at', ['lead_id', 'occurred_at'], unique=False)

    _seed_default_scoring()


def _seed_default_scoring() -> None:
    """The rules of scoring/default_rules.yaml, stored as written (the loader checked them)."""
    from nurture.scoring.store import default_seed

    now = datetime.now(UTC)
    settings, rules = default_seed()
    settings_table = sa.table(
        'scoring_settings', sa.column('id', sa.Integer), sa.column('document', JSON_DOCUMENT),
        sa.column('source', sa.Text), sa.column('loaded_at', sa.DateTime(timezone=True)),
        sa.column('revision', sa.String),
    )
    rules_table = sa.table(
        'score_rules', sa.column('name', sa.String), sa.column('kind', sa.String), sa.column('position', sa.Integer),
        sa.column('definition', JSON_DOCUMENT), sa.column('enabled', sa.Boolean),
        sa.column('created_at', sa.DateTime(timezone=True)), sa.column('updated_at', sa.DateTime(timezone=True)),
    )
    op.bulk_insert(settings_table, [{'id': 1, 'document': settings, 'source': 'scoring/default_rules.yaml',
                                         'loaded_at': now, 'revision': uuid4().hex}])
    op.bulk_insert(rules_table, [
        {**rule, 'enabled': True, 'created_at': now, 'updated_at': now} for rule in rules
    ])


def downgrade() -> None:

    with op.batch_alter_table('score_entries', schema=None) as batch_op:
        batch_op.drop_index('ix_score_entries_lead_id_occurred_at')

    op.drop_table('score_entries')
    with op.batch_alter_table('engagement_events', schema=None) as batch_op:
        batch_op.drop_index('ix_engagement_events_type_occurred_at')
        batch_op.drop_index('ix_engagement_events_pending', postgresql_where=PENDING, sqlite_where=PENDING)
        batch_op.drop_index('ix_engagement_events_message_id_type')
        batch_op.drop_index('ix_engagement_events_lead_id_occurred_at')

    op.drop_table('engagement_events')
    op.drop_table('score_caps')
    op.drop_table('lead_scores')
    op.drop_table('lead_preferences')
    op.drop_table('scoring_settings')
    op.drop_table('score_rules')
    with op.batch_alter_table('provider_events', schema=None) as batch_op:
        batch_op.drop_index('ix_provider_events_pending', postgresql_where=PENDING, sqlite_where=PENDING)

    op.drop_table('provider_events')
    op.drop_table('api_keys')
