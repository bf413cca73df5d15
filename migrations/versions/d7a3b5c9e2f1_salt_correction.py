"""salt_correction table: masks fixed with clicks, saved as training data

Revision ID: d7a3b5c9e2f1
Revises: c4e8f2a1d9b6
Create Date: 2026-12-04 11:40:00

"""
from alembic import op
import sqlalchemy as sa


revision = 'd7a3b5c9e2f1'
down_revision = 'c4e8f2a1d9b6'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('salt_correction',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('prediction_id', sa.String(length=32), nullable=False),
    sa.Column('source_id', sa.String(length=32), nullable=False),
    sa.Column('filename', sa.String(length=255), nullable=False),
    sa.Column('clicks', sa.JSON(), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['owner_id'], ['account.id'], name='fk_salt_correction_owner_id_account'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('salt_correction', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_salt_correction_prediction_id'), ['prediction_id'], unique=True)
        batch_op.create_index(batch_op.f('ix_salt_correction_source_id'), ['source_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_salt_correction_owner_id'), ['owner_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_salt_correction_created_at'), ['created_at'], unique=False)


def downgrade():
    with op.batch_alter_table('salt_correction', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_salt_correction_created_at'))
        batch_op.drop_index(batch_op.f('ix_salt_correction_owner_id'))
        batch_op.drop_index(batch_op.f('ix_salt_correction_source_id'))
        batch_op.drop_index(batch_op.f('ix_salt_correction_prediction_id'))
    op.drop_table('salt_correction')
