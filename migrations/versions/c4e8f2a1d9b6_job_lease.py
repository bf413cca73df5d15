"""job leases: the worker running a job renews heartbeat_at; any front end takes back an expired one

Revision ID: c4e8f2a1d9b6
Revises: b3d7e1f0a2c4
Create Date: 2026-12-04 08:00:00

"""
import sqlalchemy as sa
from alembic import op

revision = 'c4e8f2a1d9b6'
down_revision = 'b3d7e1f0a2c4'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.add_column(sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_job_heartbeat_at'), ['heartbeat_at'], unique=False)


def downgrade():
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_job_heartbeat_at'))
        batch_op.drop_column('heartbeat_at')
