"""The archive function takes its seal, so an archive can remove while it writes its file.

`jobtrail archive` on PostgreSQL now removes the chosen jobs' events while its read pass
writes the file (docs/retention.md), and records the archive last, once the file is in
place, in the same transaction. `jobtrail_archive_events(archive_id)` (migration 0012) read
the cut from the archive's record, which then does not exist yet; it is replaced by
`jobtrail_archive_events(archive_id, seal_id)`, which reads the cut from the seal, refuses an
archive id already recorded, checks every listed job as before (whole, finished, terminal
event at or before the seal) and deletes. It leaves ``jobtrail.archived`` set to
``archive_id:seal_id`` for the rest of its transaction, and a trigger on `job_log_archives`
refuses, in that transaction, a record of any other archive or seal: the events removed are
recorded under the archive and seal they were checked against, or the transaction fails.
A transaction that removed and never recorded is what only the owner can commit (EXECUTE
stays revoked from PUBLIC), and `jobtrail replay` reports it: the events are missing from
every seal after them.

SQLite: nothing (its archive runs its steps in order, record first; migration 0012's guard
is unchanged).

Revision ID: 0015
Revises: 0014
"""

import importlib

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

TERMINAL = "'JobCompleted', 'JobFailed', 'JobCancelled'"

ARCHIVE_FUNCTION = f"""
CREATE FUNCTION jobtrail_archive_events(p_archive_id bigint, p_seal_id bigint)
RETURNS TABLE (event_position bigint, event_hash varchar) AS $$
DECLARE
    cut bigint;
    bad text;
BEGIN
    SELECT position INTO cut FROM job_log_seals WHERE seal_id = p_seal_id;
    IF cut IS NULL THEN
        RAISE EXCEPTION 'there is no seal %', p_seal_id USING ERRCODE = 'JT002';
    END IF;
    IF EXISTS (SELECT 1 FROM job_log_archives WHERE archive_id = p_archive_id) THEN
        RAISE EXCEPTION 'archive % is recorded already', p_archive_id USING ERRCODE = 'JT002';
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
    PERFORM set_config('jobtrail.archived', p_archive_id || ':' || p_seal_id, true);
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
REVOKE ALL ON FUNCTION jobtrail_archive_events(bigint, bigint) FROM PUBLIC;

CREATE FUNCTION job_log_archives_as_removed() RETURNS trigger AS $$
DECLARE
    archived text := coalesce(current_setting('jobtrail.archived', true), '');
BEGIN
    IF archived <> '' AND archived <> NEW.archive_id || ':' || NEW.seal_id THEN
        RAISE EXCEPTION 'archive % at seal % is not the one removed in this transaction (%)',
            NEW.archive_id, NEW.seal_id, archived USING ERRCODE = 'JT002';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER job_log_archives_as_removed BEFORE INSERT ON job_log_archives
    FOR EACH ROW EXECUTE FUNCTION job_log_archives_as_removed();
"""

DOWN = """
DROP TRIGGER job_log_archives_as_removed ON job_log_archives;
DROP FUNCTION job_log_archives_as_removed();
DROP FUNCTION jobtrail_archive_events(bigint, bigint);
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP FUNCTION jobtrail_archive_events(bigint)")
    op.execute(ARCHIVE_FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(DOWN)
    previous = importlib.import_module(
        "jobtrail.adapters.sql.migrations.versions.0012_log_archives"
    )
    op.execute(previous.POSTGRES_ARCHIVE_FUNCTION)
