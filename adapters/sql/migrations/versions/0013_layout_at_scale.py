"""The layout at scale (PostgreSQL): one index fewer on `job`, room for its updates, and
autovacuum settings for the two tables that grow and churn (measured: docs/scale.md).

- ``job_pkey`` becomes ``PRIMARY KEY (id) INCLUDE (job_type)`` and ``job_id_type`` (migration
  0009: ``(id, job_type)``, the dashboard's join reading a job's type from the index alone)
  goes: the key answers that join from the index alone too. Every update of a job that
  changes its status (its claim and its outcome: never HOT, ``status`` is indexed) inserts an
  entry into each index of the table; job ids are random (UUIDv4), so in both of these
  indexes that entry lands on a random leaf page, which on a big table is seldom in shared
  buffers. One such index fewer is one random page fewer per update, and ~110 bytes per job.
- ``job`` gets ``fillfactor = 85``: a job's row is inserted once and updated two to four times
  within seconds (claim, progress, outcome; heartbeats move the lease), so new pages keep
  room for those versions: an update that changes no indexed column (progress, a heartbeat)
  can be HOT, and the others stay on the row's page. Existing pages are left as they are
  (finished jobs are not updated again); only pages written from now on keep the room.
- autovacuum, per table: the defaults wait for 20 % of a table to change (inserted, for
  ``vacuum_insert``), which on a log of ten million events is two million events before the
  visibility map (index-only scans: the dashboard, the counts by status) is brought up to
  date or anything is frozen, and 500,000 dead versions of `job` rows before they are
  cleaned. 2 % here (and the default thresholds) keeps each run small and frequent; on `job`
  the statistics are refreshed as often, so the claim's plan sees the queue as it is.
  `job_events` gets the same for deletions, which archives (migration 0012) now make.

Not partitioned: `job_events` keeps one table (docs/scale.md: its costs are those of its
indexes, which partitions by position would not make smaller for the lookups by job, and
archives remove histories by job, never a range of positions).

SQLite: nothing (one file, no fillfactor, no autovacuum; its primary key cannot carry a
column, so ``job_id_type`` stays).

Plain DDL in the migration's transaction: rebuilding the primary key takes an ACCESS
EXCLUSIVE lock on `job` while it builds (about 7 s for 2.5 million jobs on the development
machine). Where that matters, build ``job_pkey_covering`` by hand first with ``CREATE UNIQUE
INDEX CONCURRENTLY job_pkey_covering ON job (id) INCLUDE (job_type)``; this migration then
swaps it in (``USING INDEX``) without building anything.

Revision ID: 0013
Revises: 0012
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

AUTOVACUUM = {
    "job": (
        "autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_insert_scale_factor = 0.02,"
        " autovacuum_analyze_scale_factor = 0.02"
    ),
    "job_events": (
        "autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_insert_scale_factor = 0.02,"
        " autovacuum_analyze_scale_factor = 0.05"
    ),
}
RESET = (
    "autovacuum_vacuum_scale_factor, autovacuum_vacuum_insert_scale_factor,"
    " autovacuum_analyze_scale_factor"
)
FILLFACTOR = 85


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("CREATE UNIQUE INDEX IF NOT EXISTS job_pkey_covering ON job (id) INCLUDE (job_type)")
    op.execute(
        "ALTER TABLE job DROP CONSTRAINT job_pkey,"
        " ADD CONSTRAINT job_pkey PRIMARY KEY USING INDEX job_pkey_covering"
    )
    op.execute("DROP INDEX IF EXISTS job_id_type")
    op.execute(f"ALTER TABLE job SET (fillfactor = {FILLFACTOR}, {AUTOVACUUM['job']})")
    op.execute(f"ALTER TABLE job_events SET ({AUTOVACUUM['job_events']})")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"ALTER TABLE job_events RESET ({RESET})")
    op.execute(f"ALTER TABLE job RESET (fillfactor, {RESET})")
    op.execute("CREATE INDEX IF NOT EXISTS job_id_type ON job (id, job_type)")
    op.execute("CREATE UNIQUE INDEX job_pkey_plain ON job (id)")
    op.execute(
        "ALTER TABLE job DROP CONSTRAINT job_pkey,"
        " ADD CONSTRAINT job_pkey PRIMARY KEY USING INDEX job_pkey_plain"
    )
