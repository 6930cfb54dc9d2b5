"""PostgreSQL notifies ``jobtrail_job_finished`` with a job's id when its row turns final.

`Jobtrail.wait` listens on the channel instead of polling. The payload is the id alone
(NOTIFY payloads are limited to 8 kB); a notification only says "look again", the row is
the truth. The trigger fires for rows whose status changes to completed, failed or
cancelled, and does nothing on SQLite, where waiting polls.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

CHANNEL = "jobtrail_job_finished"  # jobtrail.adapters.sql.waiting.CHANNEL

UPGRADE = f"""
CREATE OR REPLACE FUNCTION job_finished_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('{CHANNEL}', NEW.id);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER job_finished_notify AFTER UPDATE OF status ON job
    FOR EACH ROW
    WHEN (NEW.status IN ('completed', 'failed', 'cancelled')
          AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION job_finished_notify();
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(UPGRADE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER job_finished_notify ON job")
        op.execute("DROP FUNCTION job_finished_notify()")
