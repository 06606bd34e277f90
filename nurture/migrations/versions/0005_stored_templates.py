"""stored email templates with their versions

Revision ID: 0005
Revises: 0006
Create Date: 2026-11-23 03:40:00.000000

Numbered 0005 as planned, but applied after 0006: 0006 was written against 0004 before this one existed, and
a database already at 0006 must still get these tables.
"""

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('email_templates',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('current_version', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_email_templates')),
    sa.UniqueConstraint('name', name=op.f('uq_email_templates_name'))
    )
    op.create_table('email_template_versions',
    sa.Column('template_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=320), nullable=False),
    sa.ForeignKeyConstraint(['template_id'], ['email_templates.id'], name=op.f('fk_email_template_versions_template_id_email_templates'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('template_id', 'version', name=op.f('pk_email_template_versions'))
    )


def downgrade() -> None:
    op.drop_table('email_template_versions')
    op.drop_table('email_templates')
