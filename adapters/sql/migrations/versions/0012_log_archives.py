"""Archives: the one narrow way to remove events from the log, and the record each leaves.

`jobtrail archive` moves the whole histories of finished jobs into a file. Before it removes
anything it appends a record (`job_log_archives`: the file's digest and size, the events'
count, positions and digest, the seal it is cut at, and what is left of the log up to that
seal) and lists the jobs it takes (`job_log_archive_jobs`). Both tables are append-only.

The log's append-only guard now lets a DELETE through only for events of jobs listed under
the archive being carried out:

* PostgreSQL: only inside `jobtrail_archive_events(archive_id)`, a ``SECURITY DEFINER``
  function that first checks that every listed job's history is whole, finished and sealed,
  then sets ``jobtrail.archive_id`` for its own transaction and deletes. A plain DELETE (by
  any role, the owner included) finds the setting unset and is refused with ``JT001``; a
  role without DELETE on the table, which is every role but the owner, can archive only
  through the function, and only once granted EXECUTE (revoked from PUBLIC here).
* SQLite (one file, no roles): a DELETE is refused unless the event's job is listed in an
  archive record; an unarchived event can never be deleted.

UPDATE and TRUNCATE stay refused for everyone. The ``JT002`` error of the function (a job
not finished, not whole, or not sealed) is `ArchiveRefused`.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op
from jobtrail.adapters.sql.schema import Position, UtcDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

TABLES = ("job_log_archives", "job_log_archive_jobs")
TERMINAL = "'JobCompleted', 'JobFailed', 'JobCancelled'"

POSTGRES_APPEND_ONLY = """
CREATE OR REPLACE FUNCTION {table}_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '{table} is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'JT001', TABLE = TG_TABLE_NAME;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER {table}_no_update_delete BEFORE UPDATE OR DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION {table}_append_only();
CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
    FOR EACH STATEMENT EXECUTE FUNCTION {table}_append_only();
"""

POSTGRES_EVENTS_GUARD = """
CREATE OR REPLACE FUNCTION job_events_delete_guard() RETURNS trigger AS $$
DECLARE
    archiving text := current_setting('jobtrail.archive_id', true);
BEGIN
    IF coalesce(archiving, '') <> '' AND NOT EXISTS (
        SELECT 1 FROM removed r
        WHERE NOT EXISTS (
            SELECT 1 FROM job_log_archive_jobs a
            WHERE a.job_id = r.job_id AND a.archive_id = archiving::bigint
        )
    ) THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'job_events is append-only: DELETE is not allowed'
        USING ERRCODE = 'JT001', TABLE = TG_TABLE_NAME;
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER job_events_no_update_delete ON job_events;
CREATE TRIGGER job_events_no_update BEFORE UPDATE ON job_events
    FOR EACH ROW EXECUTE FUNCTION job_events_append_only();
CREATE TRIGGER job_events_delete_guard AFTER DELETE ON job_events
    REFERENCING OLD TABLE AS removed
    FOR EACH STATEMENT EXECUTE FUNCTION job_events_delete_guard();
"""
"""UPDATE stays refused row by row. DELETE is checked once per statement, over the rows it
removed (a transition table): a plain DELETE (the setting unset) is refused, and so is one
that removed any event of a job not listed under the archive being carried out. A refused
statement's deletions roll back with it. One set-based check instead of a function call and
a lookup per row: removing 5M events took 78 s instead of 114 s (both measured under the same
load, docs/benchmarks.md)."""

POSTGRES_ARCHIVE_FUNCTION = f"""
CREATE OR REPLACE FUNCTION jobtrail_archive_events(p_archive_id bigint)
RETURNS TABLE (event_position bigint, event_hash varchar) AS $$
DECLARE
    cut bigint;
    bad text;
BEGIN
    SELECT seal_position INTO cut FROM job_log_archives WHERE archive_id = p_archive_id;
    IF cut IS NULL THEN
        RAISE EXCEPTION 'there is no archive %', p_archive_id USING ERRCODE = 'JT002';
    END IF;
    SELECT a.job_id INTO bad FROM job_log_archive_jobs a
    LEFT JOIN LATERAL (
        SELECT e.type, e.position FROM job_events e
        WHERE e.job_id = a.job_id ORDER BY e.version DESC LIMIT 1
    ) last ON true
    WHERE a.archive_id = p_archive_id
      AND (last.type IS NULL OR last.type NOT IN ({TERMINAL}) OR last.position > cut)
    LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'archive %: job % has no whole history finished by position %',
            p_archive_id, bad, cut USING ERRCODE = 'JT002';
    END IF;
    PERFORM set_config('jobtrail.archive_id', p_archive_id::text, true);
    RETURN QUERY
        WITH removed AS (
            DELETE FROM job_events e USING job_log_archive_jobs a
            WHERE a.archive_id = p_archive_id AND e.job_id = a.job_id
            RETURNING e.position, e.hash
        )
        SELECT removed.position, removed.hash FROM removed;
    PERFORM set_config('jobtrail.archive_id', '', true);
END;
$$ LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT;
REVOKE ALL ON FUNCTION jobtrail_archive_events(bigint) FROM PUBLIC;
"""

POSTGRES_DOWN = """
DROP TRIGGER job_events_delete_guard ON job_events;
DROP TRIGGER job_events_no_update ON job_events;
CREATE TRIGGER job_events_no_update_delete BEFORE UPDATE OR DELETE ON job_events
    FOR EACH ROW EXECUTE FUNCTION job_events_append_only();
DROP FUNCTION job_events_delete_guard();
DROP FUNCTION jobtrail_archive_events(bigint);
"""


def _sqlite_append_only(table: str) -> list[str]:
    return [
        f"""CREATE TRIGGER {table}_no_{name.lower()} BEFORE {name} ON {table}
            BEGIN SELECT RAISE(ABORT, '{table} is append-only: {name} is not allowed'); END"""
        for name in ("UPDATE", "DELETE")
    ]


SQLITE_EVENTS_GUARD = """
CREATE TRIGGER job_events_no_delete BEFORE DELETE ON job_events
    WHEN NOT EXISTS (SELECT 1 FROM job_log_archive_jobs a WHERE a.job_id = OLD.job_id)
    BEGIN SELECT RAISE(ABORT, 'job_events is append-only: DELETE is not allowed'); END
"""

SQLITE_EVENTS_DOWN = """
CREATE TRIGGER job_events_no_delete BEFORE DELETE ON job_events
    BEGIN SELECT RAISE(ABORT, 'job_events is append-only: DELETE is not allowed'); END
"""


def upgrade() -> None:
    op.create_table(
        "job_log_archives",
        sa.Column("archive_id", Position, primary_key=True, autoincrement=True),
        sa.Column("seal_id", Position, nullable=False),
        sa.Column("seal_position", Position, nullable=False),
        sa.Column("finished_before", UtcDateTime),
        sa.Column("file_name", sa.String(1000), nullable=False),
        sa.Column("file_digest", sa.String(64), nullable=False),
        sa.Column("file_bytes", sa.BigInteger, nullable=False),
        sa.Column("event_count", sa.BigInteger, nullable=False),
        sa.Column("job_count", sa.BigInteger, nullable=False),
        sa.Column("first_position", Position, nullable=False),
        sa.Column("last_position", Position, nullable=False),
        sa.Column("events_digest", sa.String(64), nullable=False),
        sa.Column("kept_count", sa.BigInteger, nullable=False),
        sa.Column("kept_digest", sa.String(64), nullable=False),
        sa.Column(
            "archived_at", UtcDateTime, nullable=False, server_default=sa.func.current_timestamp()
        ),
        sa.Column("actor", sa.String(200), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "job_log_archive_jobs",
        sa.Column("job_id", sa.String(36), primary_key=True),
        sa.Column("archive_id", Position, nullable=False),
    )
    op.create_index("job_log_archive_jobs_archive", "job_log_archive_jobs", ["archive_id"])
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(POSTGRES_APPEND_ONLY.format(table=table))
        op.execute(POSTGRES_EVENTS_GUARD)
        op.execute(POSTGRES_ARCHIVE_FUNCTION)
        return
    for table in TABLES:
        for statement in _sqlite_append_only(table):
            op.execute(statement)
    op.execute("DROP TRIGGER job_events_no_delete")
    op.execute(SQLITE_EVENTS_GUARD)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(POSTGRES_DOWN)
    else:
        op.execute("DROP TRIGGER job_events_no_delete")
        op.execute(SQLITE_EVENTS_DOWN)
    for table in TABLES:
        op.drop_table(table)
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"DROP FUNCTION {table}_append_only()")
