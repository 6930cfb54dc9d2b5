"""A running job's lease moves from its own table into the job's row.

Until now every attempt inserted a `job_lease` row when it started and deleted it when it
ended: two more writes, and two more index updates, per job, in every worker turn. The row
already holds the attempt and the worker (`JobStarted` sets both), so the lease's expiry
joins them as ``job.lease_expires_at``. It stays outside the projection: heartbeats move it
without events, a rebuild keeps it, replay does not compare it.

It has no index of its own: the reaper reads the running jobs through the partial
``job_running`` index (running jobs are few), and a heartbeat that changes no indexed
column can be a HOT update. Live leases are copied over, so jobs running across the
upgrade keep theirs.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op
from jobtrail.adapters.sql.schema import UtcDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

COPY_LEASES = """
UPDATE job SET lease_expires_at = (
    SELECT l.expires_at FROM job_lease l
    WHERE l.job_id = job.id AND l.attempt = job.attempt
)
WHERE status = 'processing'
"""

COPY_BACK = """
INSERT INTO job_lease (job_id, attempt, worker_id, expires_at)
SELECT id, attempt, worker_id, lease_expires_at FROM job
WHERE status = 'processing' AND lease_expires_at IS NOT NULL AND worker_id IS NOT NULL
"""


def upgrade() -> None:
    with op.batch_alter_table("job") as table:
        table.add_column(sa.Column("lease_expires_at", UtcDateTime, nullable=True))
    op.execute(COPY_LEASES)
    op.drop_index("job_lease_expires_at", table_name="job_lease")
    op.drop_table("job_lease")


def downgrade() -> None:
    op.create_table(
        "job_lease",
        sa.Column("job_id", sa.String(36), primary_key=True),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("worker_id", sa.String(200), nullable=False),
        sa.Column("expires_at", UtcDateTime, nullable=False),
    )
    op.create_index("job_lease_expires_at", "job_lease", ["expires_at"])
    op.execute(COPY_BACK)
    with op.batch_alter_table("job") as table:
        table.drop_column("lease_expires_at")
