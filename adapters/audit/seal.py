"""`jobtrail seal`: append a checkpoint of the whole log (the one write of the audit adapter).

A seal is the running digest of every event up to a position; replay folds the log again
and compares (`checks.seal_check`). Seals are append-only like the log.
"""

from __future__ import annotations

from dataclasses import dataclass

from jobtrail.adapters.audit.reads import LIVE, last_position, read_seals, stream_positions
from jobtrail.adapters.sql.engine import WRITE, translated_errors
from jobtrail.adapters.sql.schema import job_log_seals
from jobtrail.domain.seals import RunningDigest, Seal
from sqlalchemy import Engine, insert


@dataclass(frozen=True)
class SealRecord:
    """The seal appended, and the one before it (None: the first)."""

    seal_id: int
    position: int
    event_count: int
    digest: str
    previous: Seal | None


def append_seal(engine: Engine, actor: str) -> SealRecord:
    """Fold the log since the last seal into the running digest and append a seal.

    Covers every event up to the highest position visible when it starts; events appended
    meanwhile get later positions (positions are handed out in commit order) and are left
    for the next seal.
    """
    upto, previous, running = _fold_since_last_seal(engine)
    row = {
        "position": upto,
        "event_count": running.count,
        "digest": running.digest,
        "actor": actor,
    }
    with (
        translated_errors(),
        engine.connect().execution_options(**WRITE) as conn,
        conn.begin(),
    ):
        seal_id = conn.execute(insert(job_log_seals).returning(job_log_seals.c.seal_id), row)
        new_id = int(seal_id.scalar_one())
    return SealRecord(new_id, upto, running.count, running.digest, previous)


def _fold_since_last_seal(engine: Engine) -> tuple[int, Seal | None, RunningDigest]:
    """The position sealed up to, the last seal, and the digest folded on from it (read-only)."""
    with translated_errors(), engine.connect() as conn:
        upto = last_position(conn, LIVE)
        seals = read_seals(conn, LIVE)
        previous = seals[-1] if seals else None
        running = RunningDigest.after(previous)
        for position, event_hash in stream_positions(conn, LIVE, running.position, upto):
            running.add(position, event_hash)
        conn.rollback()
    return upto, previous, running
