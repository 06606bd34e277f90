"""campaign designer: every version of each campaign, the drafts of the web editor, and the leads kept out of
a segment entry activated for new matches only

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 10:30:00.000000
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('campaign_drafts',
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('definition', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('base_version', sa.Integer(), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('history', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_by', sa.String(length=320), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_campaign_drafts_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('campaign_id', name=op.f('pk_campaign_drafts'))
    )
    op.create_table('campaign_entry_exclusions',
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('lead_id', BIG_ID, nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_campaign_entry_exclusions_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], name=op.f('fk_campaign_entry_exclusions_lead_id_leads'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('campaign_id', 'lead_id', name=op.f('pk_campaign_entry_exclusions'))
    )
    op.create_table('campaign_versions',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('definition', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=320), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_campaign_versions_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_campaign_versions')),
    sa.UniqueConstraint('campaign_id', 'version', name=op.f('uq_campaign_versions_campaign_id'))
    )
    # Every campaign's current definition is its first recorded version.
    op.execute(
        "INSERT INTO campaign_versions (campaign_id, version, definition, created_at, created_by, note) "
        "SELECT id, version, definition, updated_at, '', 'recorded when version history began' FROM campaigns"
    )


def downgrade() -> None:
    op.drop_table('campaign_versions')
    op.drop_table('campaign_entry_exclusions')
    op.drop_table('campaign_drafts')
