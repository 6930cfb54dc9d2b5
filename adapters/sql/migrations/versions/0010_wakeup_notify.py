"""PostgreSQL tells idle workers that a job may be claimable, and the relay that the log grew.

- ``jobtrail_job_available``, payload the job's queue: a row inserted as ``queued``, a row
  whose status turns ``queued`` (a retry scheduled, a job handed back at shutdown, a reaped
  job retried), a queued row whose ``available_at`` changes. Payload ``*`` (every queue) when
  a pause is lifted or a concurrency limit is set, changed or removed: jobs held back may
  be claimable now.
- ``jobtrail_events_appended``, empty payload: once per statement inserting into
  ``job_events``.

A notification only says "look again" (the rows are the truth), is delivered after commit,
and PostgreSQL merges identical ones in a transaction: a batch of 1,000 jobs in one queue
is one notification. The job triggers are row triggers with a ``WHEN`` clause: the job rows
of a batch are inserted one statement per row, so a statement trigger would run as often,
and a ``WHEN`` that is false costs no function call — a worker's updates (``processing`` to
``completed``) and heartbeats pay nothing. SQLite has no notifications: nothing to do.

Revision ID: 0010
Revises: 0009
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

JOB_AVAILABLE = "jobtrail_job_available"  # jobtrail.adapters.sql.wakeup.JOB_AVAILABLE
EVENTS_APPENDED = "jobtrail_events_appended"  # jobtrail.adapters.sql.wakeup.EVENTS_APPENDED
EVERY_QUEUE = "*"  # jobtrail.adapters.sql.wakeup.EVERY_QUEUE

UPGRADE = f"""
CREATE OR REPLACE FUNCTION job_available_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('{JOB_AVAILABLE}', NEW.queue);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER job_available_on_insert AFTER INSERT ON job
    FOR EACH ROW
    WHEN (NEW.status = 'queued')
    EXECUTE FUNCTION job_available_notify();
CREATE TRIGGER job_available_on_update AFTER UPDATE OF status, available_at ON job
    FOR EACH ROW
    WHEN (NEW.status = 'queued'
          AND (OLD.status IS DISTINCT FROM NEW.status
               OR OLD.available_at IS DISTINCT FROM NEW.available_at))
    EXECUTE FUNCTION job_available_notify();

CREATE OR REPLACE FUNCTION flow_changed_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('{JOB_AVAILABLE}', '{EVERY_QUEUE}');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER job_available_on_resume AFTER DELETE ON job_pause
    FOR EACH STATEMENT EXECUTE FUNCTION flow_changed_notify();
CREATE TRIGGER job_available_on_limit AFTER INSERT OR UPDATE OR DELETE ON job_limit
    FOR EACH STATEMENT EXECUTE FUNCTION flow_changed_notify();

CREATE OR REPLACE FUNCTION events_appended_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('{EVENTS_APPENDED}', '');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER events_appended_notify AFTER INSERT ON job_events
    FOR EACH STATEMENT EXECUTE FUNCTION events_appended_notify();
"""

DOWNGRADE = """
DROP TRIGGER events_appended_notify ON job_events;
DROP FUNCTION events_appended_notify();
DROP TRIGGER job_available_on_limit ON job_limit;
DROP TRIGGER job_available_on_resume ON job_pause;
DROP FUNCTION flow_changed_notify();
DROP TRIGGER job_available_on_update ON job;
DROP TRIGGER job_available_on_insert ON job;
DROP FUNCTION job_available_notify();
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(UPGRADE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(DOWNGRADE)
