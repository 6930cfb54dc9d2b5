"""Indexes the web dashboard (`jobtrail web`) reads by, so its pages stay fast on a big log.

- ``job_events_type_occurred_at``: the charts count terminal events and pair starts with
  their outcomes inside a time window; the window of one type is one range of this index,
  which also holds the job id (completed and cancelled jobs are counted from it alone).
- ``job_id_type``: a job's type by its id, read from the index alone (the charts' join).
- ``job_created_at``: the jobs table, newest first, one page after another (the keyset
  ``created_at, id`` of `jobtrail.adapters.web.queries`), and its ``since``/``until`` filter.
- ``job_status_created_at``: the same filtered to one status (``failed``), and the live
  counts by status in every page's header (read from the index alone on PostgreSQL).

Plain ``CREATE INDEX`` (in the migration's transaction): on a large live PostgreSQL table it
blocks appends while it builds; create the same indexes ``CONCURRENTLY`` by hand first if that
matters (``IF NOT EXISTS`` here then leaves them be).

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

INDEXES = {
    "job_events_type_occurred_at": "job_events (type, occurred_at, job_id)",
    "job_id_type": "job (id, job_type)",
    "job_created_at": "job (created_at, id)",
    "job_status_created_at": "job (status, created_at, id)",
}


def upgrade() -> None:
    for name, columns in INDEXES.items():
        op.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {columns}")


def downgrade() -> None:
    for name in INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {name}")
