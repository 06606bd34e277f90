"""auth hardening: a session version on users (logout ends sessions server-side) and the login_failures table
behind the login throttle

Revision ID: 0007
Revises: 0005
Create Date: 2026-11-24 09:00:00.000000

Revises 0005, the head: 0005 was applied after 0006 (see 0005's note).
"""

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0005'
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('session_version', sa.Integer(), server_default=sa.text('0'), nullable=False))

    op.create_table('login_failures',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('kind', sa.Enum('account', 'address', name='throttle_kind', native_enum=False, create_constraint=True, length=20), nullable=False),
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('failed_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_login_failures'))
    )
    with op.batch_alter_table('login_failures', schema=None) as batch_op:
        batch_op.create_index('ix_login_failures_failed_at', ['failed_at'], unique=False)
        batch_op.create_index('ix_login_failures_kind_key_failed_at', ['kind', 'key', 'failed_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('login_failures', schema=None) as batch_op:
        batch_op.drop_index('ix_login_failures_kind_key_failed_at')
        batch_op.drop_index('ix_login_failures_failed_at')

    op.drop_table('login_failures')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('session_version')
