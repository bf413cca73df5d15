"""whale_decision table: admins' confirm / new-individual verdicts on whale answers

Revision ID: 9a4f6c2e1b7d
Revises: 5c1e0a9d2f4b
Create Date: 2026-11-24 10:30:00

"""
from alembic import op
import sqlalchemy as sa


revision = '9a4f6c2e1b7d'
down_revision = '5c1e0a9d2f4b'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('whale_decision',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('prediction_id', sa.String(length=32), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('whale_id', sa.String(length=64), nullable=False),
    sa.Column('decided_by', sa.String(length=64), nullable=False),
    sa.Column('client', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('whale_decision', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_whale_decision_prediction_id'), ['prediction_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_whale_decision_whale_id'), ['whale_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_whale_decision_created_at'), ['created_at'], unique=False)


def downgrade():
    with op.batch_alter_table('whale_decision', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_whale_decision_created_at'))
        batch_op.drop_index(batch_op.f('ix_whale_decision_whale_id'))
        batch_op.drop_index(batch_op.f('ix_whale_decision_prediction_id'))
    op.drop_table('whale_decision')
