"""Where each relay is in the log, and which relay process holds the right to publish.

One row per relay name. ``position`` is the last log position the broker acknowledged;
``owner`` and ``lease_expires_at`` make one relay active at a time on every backend.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op
from jobtrail.adapters.sql.schema import Position, UtcDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "relay_position",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("position", Position, nullable=False),
        sa.Column("owner", sa.String(200)),
        sa.Column("lease_expires_at", UtcDateTime),
        sa.Column("updated_at", UtcDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("relay_position")
