"""Leases of running jobs: coordination between workers and the reaper, not facts.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from jobtrail.adapters.sql.schema import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_lease",
        sa.Column("job_id", sa.String(36), primary_key=True),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("worker_id", sa.String(200), nullable=False),
        sa.Column("expires_at", UtcDateTime, nullable=False),
    )
    op.create_index("job_lease_expires_at", "job_lease", ["expires_at"])


def downgrade() -> None:
    op.drop_table("job_lease")
