"""An index on when jobs finished, so `jobtrail stats` reads a window, not the table.

``job_completed_at`` on ``job (completed_at)``, partial on ``completed_at IS NOT NULL``: a
queued or running job has no entry, and a finishing one adds an entry at the index's right
end (finishing times grow), a page that stays in memory. `jobtrail stats --since` (default:
the last 24 h) counts the jobs finished in its window through this index and the live ones
through ``job_status_created_at`` (migration 0009), so its cost follows recent work, not the
size of `job` (docs/scale.md).

Both backends (SQLite has partial indexes too). Plain CREATE INDEX in the migration's
transaction; on a big PostgreSQL table, build it first with ``CREATE INDEX CONCURRENTLY
job_completed_at ON job (completed_at) WHERE completed_at IS NOT NULL`` and this migration
finds it there.

Revision ID: 0014
Revises: 0013
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX IF NOT EXISTS job_completed_at ON job (completed_at)"
        " WHERE completed_at IS NOT NULL"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS job_completed_at")
