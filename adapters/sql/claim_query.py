"""The claim's SELECTs: the plain one, and the one for job types under a concurrency limit.

Without limits a claim is one indexed query in claim order (priority, then
``available_at``, then id) that skips rows other claimers hold and leaves out paused
queues and types and limited types, read in the statement itself (``NOT IN``). Job
types with a limit are claimed by a second query that runs only while their `job_limit`
rows are locked (PostgreSQL ``FOR UPDATE``; SQLite has a single writer), so two claimers
never both see the last free slot: it counts the jobs processing per type and key, ranks
the queued ones of each key, and admits them by priority, then by turn, then round the
keys (`limited_claim`), so one key's backlog cannot starve the others.
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from jobtrail.adapters.sql.schema import UtcDateTime, job, job_limit, job_pause
from jobtrail.domain.status import JobStatus
from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    TextualSelect,
    and_,
    bindparam,
    select,
    text,
)

QUEUED = JobStatus.QUEUED.value
CLAIM_ORDER = (job.c.priority.desc(), job.c.available_at, job.c.id)


NOT_PAUSED_SQL = (
    "queue NOT IN (SELECT name FROM job_pause WHERE kind = 'queue')"
    " AND job_type NOT IN (SELECT name FROM job_pause WHERE kind = 'type')"
)
"""A job is claimable only while neither its queue nor its type is paused: checked in the
claim's own statement, so a pause holds from the moment it commits. ``NOT IN`` an
uncorrelated subquery (the names are never NULL) is read once per statement (PostgreSQL: a
hashed subplan), so the claim keeps its index scan in claim order; a correlated ``NOT
EXISTS`` would become an anti-join over the whole queue."""
_NOT_PAUSED = and_(
    job.c.queue.not_in(select(job_pause.c.name).where(job_pause.c.kind == "queue")),
    job.c.job_type.not_in(select(job_pause.c.name).where(job_pause.c.kind == "type")),
)
_NOT_LIMITED = job.c.job_type.not_in(select(job_limit.c.job_type))


@dataclass(frozen=True)
class ClaimFilter:
    """Which jobs a worker may take: its job types and queues (None: every one)."""

    job_types: Collection[str] | None = None
    queues: Collection[str] | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        """The worker's own filters, and no pause in force, on the `job` table."""
        where: list[ColumnElement[bool]] = [_NOT_PAUSED]
        if self.job_types is not None:
            where.append(job.c.job_type.in_(bindparam("types", expanding=True)))
        if self.queues is not None:
            where.append(job.c.queue.in_(bindparam("queues", expanding=True)))
        return where

    def shape(self) -> tuple[bool, bool]:
        """Which of the filters apply: one statement per shape."""
        return self.job_types is not None, self.queues is not None

    def parameters(self) -> dict[str, Any]:
        return {"types": sorted(self.job_types or ()), "queues": sorted(self.queues or ())}

    def limited_types(self, limited: frozenset[str]) -> list[str]:
        """Of the ``limited`` types, those this worker may claim (paused ones are left out
        in SQL)."""
        types = limited
        if self.job_types is not None:
            types &= frozenset(self.job_types)
        return sorted(types)


def unlimited_claim(claim_filter: ClaimFilter) -> Select[Any]:
    """Queued, available jobs of types without a limit, not paused, in claim order (the
    limits are read in the statement itself, so a limit holds from the moment it commits)."""
    return _unlimited_claim(*claim_filter.shape())


@functools.lru_cache(maxsize=8)
def _unlimited_claim(types: bool, queues: bool) -> Select[Any]:
    return (
        select(job.c.id)
        .where(
            job.c.status == QUEUED,
            job.c.available_at <= bindparam("now"),
            *ClaimFilter(() if types else None, () if queues else None).conditions(),
            _NOT_LIMITED,
        )
        .order_by(*CLAIM_ORDER)
        .limit(bindparam("limit"))
    )


LIMITED_TYPES = select(job_limit.c.job_type).distinct()
"""The job types under a limit: the ones whose claims take the limited path."""

LOCK_LIMITS = (
    select(job_limit.c.job_type)
    .where(job_limit.c.job_type.in_(bindparam("claimable", expanding=True)))
    .order_by(job_limit.c.job_type, job_limit.c.per_key)
)
"""The limit rows of the types a claim may take (locked ``FOR UPDATE`` on PostgreSQL)."""

WINDOW = 256
"""How many queued jobs of the limited types, in claim order, a claim ranks (with the
`key_heads`): the cost of a claim stays flat however long the backlog."""

KEYS_PER_CLAIM = 32
"""How many concurrency keys' next jobs a claim adds to the window, going round the keys."""


def key_heads(claim_filter: ClaimFilter) -> TextualSelect:
    """The next job of each of the `KEYS_PER_CLAIM` keys of one limited type that follow
    ``after`` (the type's `job_key_cursor`), in key order: one index probe per key
    (``job_queued_keys``), however many jobs each key has queued.

    The window alone would serve keys in claim order, so a key whose jobs wait behind a
    long backlog of another key's would wait for all of it; going round the keys, a claim
    at a time, every key's next job is ranked within a bounded number of claims.
    """
    return _key_heads(*claim_filter.shape())


@functools.lru_cache(maxsize=16)
def _key_heads(types: bool, queues: bool) -> TextualSelect:
    filters, names = _filters(types, queues)
    keyed = "status = 'queued' AND concurrency_key IS NOT NULL AND job_type = :job_type"
    statement = text(
        f"""
WITH RECURSIVE keys(key, n) AS (
    SELECT (SELECT min(concurrency_key) FROM job WHERE {keyed} AND concurrency_key > :after), 1
    UNION ALL
    SELECT (SELECT min(concurrency_key) FROM job WHERE {keyed} AND concurrency_key > keys.key),
        keys.n + 1
    FROM keys WHERE keys.key IS NOT NULL AND keys.n < {KEYS_PER_CLAIM}
)
SELECT key, (
    SELECT id FROM job
    WHERE {keyed} AND concurrency_key = keys.key AND available_at <= :now{filters}
    ORDER BY priority DESC, available_at, id
    LIMIT 1
) AS head
FROM keys WHERE key IS NOT NULL
ORDER BY key
"""
    )
    return statement.bindparams(
        *(bindparam(name, expanding=True, type_=String) for name in names),
        bindparam("now", type_=UtcDateTime()),
    ).columns(key=String, head=String)


def _filters(types: bool, queues: bool) -> tuple[str, list[str]]:
    """The worker's filters and the pauses, as SQL, and the names of their parameters."""
    chosen = [
        (condition, name)
        for wanted, condition, name in (
            (types, " AND job_type IN :types", "types"),
            (queues, " AND queue IN :queues", "queues"),
        )
        if wanted
    ]
    return f" AND {NOT_PAUSED_SQL}" + "".join(c for c, _ in chosen), [n for _, n in chosen]


def limited_claim(claim_filter: ClaimFilter, lock: bool) -> TextualSelect:
    """The ids of the queued jobs of the claimable limited types that the limits let start
    now, in admission order, at most ``limit``: run after the limit rows are locked.

    1. ``window``: the next `WINDOW` queued, available jobs of those types in claim order.
    2. ``key_rank``: each job's place among its key's (a key's first job is 1); a job is
       admissible by a per-key limit if its key's running jobs plus its rank fit the limit
       (jobs without a key are not under a per-key limit).
    3. ``type_rank``: the admissible jobs' places within their type in admission order:
       priority first; then ``turn``, the key's running jobs plus the job's key rank (the
       key running least goes first, and every key's next job before any key's second);
       then round the keys from the type's cursor (`job_key_cursor`: the key admitted last
       by the previous claim), so that keys equal in all that take turns; then age. A job
       is admitted if its type's running jobs plus its rank fit the type limit.

    ``lock`` (PostgreSQL) locks the admitted rows in the same statement, skipping any a
    cancel or the reaper holds (other claims of these types wait for the limit rows).
    Plain SQL, the same on both backends (keys are joined on ``coalesce(key, '')``, which
    no real key equals, so the join can hash); one statement text per filter shape.
    """
    return _limited_claim(lock, *claim_filter.shape())


@functools.lru_cache(maxsize=32)
def _limited_claim(lock: bool, types: bool, queues: bool) -> TextualSelect:
    filters, filter_names = _filters(types, queues)
    statement = text(
        f"""
WITH running AS (
    SELECT job_type, coalesce(concurrency_key, '') AS key, count(*) AS n FROM job
    WHERE status = 'processing' AND job_type IN :claimable
    GROUP BY job_type, coalesce(concurrency_key, '')
), next_jobs AS (
    SELECT id, job_type, concurrency_key, priority, available_at FROM (
        SELECT id, job_type, concurrency_key, priority, available_at FROM job
        WHERE status = 'queued' AND available_at <= :now AND job_type IN :claimable{filters}
        ORDER BY priority DESC, available_at, id
        LIMIT {WINDOW}
    ) in_claim_order
    UNION
    SELECT id, job_type, concurrency_key, priority, available_at FROM job
    WHERE id IN :heads AND status = 'queued'
), ranked AS (
    SELECT w.id, w.job_type, w.concurrency_key, w.priority, w.available_at,
        row_number() OVER (
            PARTITION BY w.job_type, w.concurrency_key
            ORDER BY w.priority DESC, w.available_at, w.id
        ) AS key_rank,
        key_limit.max_running AS key_cap,
        coalesce(r.n, 0) AS key_running,
        coalesce(w.concurrency_key, '') AS key,
        CASE WHEN coalesce(w.concurrency_key, '') > coalesce(c.after_key, '') THEN 0 ELSE 1 END
            AS wrapped
    FROM next_jobs w
    LEFT JOIN job_limit key_limit ON key_limit.job_type = w.job_type AND key_limit.per_key
    LEFT JOIN running r ON r.job_type = w.job_type AND r.key = coalesce(w.concurrency_key, '')
    LEFT JOIN job_key_cursor c ON c.job_type = w.job_type
), typed AS (
    SELECT a.id, a.priority, a.key_running + a.key_rank AS turn, a.wrapped, a.key,
        a.available_at,
        row_number() OVER (
            PARTITION BY a.job_type
            ORDER BY a.priority DESC, a.key_running + a.key_rank, a.wrapped, a.key,
                a.available_at, a.id
        ) AS type_rank,
        type_limit.max_running AS type_cap,
        coalesce(t.n, 0) AS type_running
    FROM ranked a
    LEFT JOIN job_limit type_limit
        ON type_limit.job_type = a.job_type AND NOT type_limit.per_key
    LEFT JOIN (SELECT job_type, sum(n) AS n FROM running GROUP BY job_type) t
        ON t.job_type = a.job_type
    WHERE a.key_cap IS NULL OR a.concurrency_key IS NULL
        OR a.key_running + a.key_rank <= a.key_cap
)
SELECT job.id, job.job_type, job.concurrency_key FROM job JOIN (
    SELECT id, priority, turn, wrapped, key, available_at FROM typed
    WHERE type_cap IS NULL OR type_running + type_rank <= type_cap
    ORDER BY priority DESC, turn, wrapped, key, available_at, id
    LIMIT :limit
) admitted ON admitted.id = job.id
WHERE job.status = 'queued'
ORDER BY admitted.priority DESC, admitted.turn, admitted.wrapped, admitted.key,
    admitted.available_at, admitted.id
{"FOR UPDATE OF job SKIP LOCKED" if lock else ""}
"""
    )
    names = ["claimable", "heads", *filter_names]
    return statement.bindparams(
        *(bindparam(name, expanding=True, type_=String) for name in names),
        bindparam("now", type_=UtcDateTime()),
    ).columns(id=String, job_type=String, concurrency_key=String)
