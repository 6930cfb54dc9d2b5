"""An index in claim order over queued jobs only.

Claims ask for `status = 'queued' ORDER BY priority DESC, available_at, id`; without a
matching index PostgreSQL sorted the whole queue on every claim.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

QUEUED = sa.text("status = 'queued'")


def upgrade() -> None:
    op.drop_index("job_status_available", table_name="job")
    op.create_index(
        "job_claim_order",
        "job",
        [sa.text("priority DESC"), "available_at", "id"],
        postgresql_where=QUEUED,
        sqlite_where=QUEUED,
    )


def downgrade() -> None:
    op.drop_index("job_claim_order", table_name="job")
    op.create_index("job_status_available", "job", ["status", "priority", "available_at"])
