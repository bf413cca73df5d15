"""accounts and API keys; every prediction and job has an owner (existing rows: anonymous)

Revision ID: b3d7e1f0a2c4
Revises: 9a4f6c2e1b7d
Create Date: 2026-12-02 21:40:00

"""
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = 'b3d7e1f0a2c4'
down_revision = '9a4f6c2e1b7d'
branch_labels = None
depends_on = None


def upgrade():
    account = op.create_table('account',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('account', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_account_name'), ['name'], unique=True)
    op.create_table('api_key',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('key_sha256', sa.String(length=64), nullable=False),
    sa.Column('label', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['account.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('api_key', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_key_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_api_key_prefix'), ['prefix'], unique=True)
    # the owner of every row answered before accounts, and of the demo mode's answers
    op.bulk_insert(account, [{'name': 'anonymous', 'role': 'user', 'password_hash': None, 'active': False,
                              'created_at': datetime.now(UTC)}])
    anonymous = op.get_bind().execute(sa.text("SELECT id FROM account WHERE name = 'anonymous'")).scalar_one()
    for table in ('prediction', 'job'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('owner_id', sa.Integer(), nullable=True))
        op.execute(sa.text(f"UPDATE {table} SET owner_id = :owner").bindparams(owner=anonymous))
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column('owner_id', existing_type=sa.Integer(), nullable=False)
            batch_op.create_index(batch_op.f(f'ix_{table}_owner_id'), ['owner_id'], unique=False)
            batch_op.create_foreign_key(f'fk_{table}_owner_id_account', 'account', ['owner_id'], ['id'])


def downgrade():
    for table in ('job', 'prediction'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(f'fk_{table}_owner_id_account', type_='foreignkey')
            batch_op.drop_index(batch_op.f(f'ix_{table}_owner_id'))
            batch_op.drop_column('owner_id')
    with op.batch_alter_table('api_key', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_key_prefix'))
        batch_op.drop_index(batch_op.f('ix_api_key_account_id'))
    op.drop_table('api_key')
    with op.batch_alter_table('account', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_account_name'))
    op.drop_table('account')
